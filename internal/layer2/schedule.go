package layer2

import (
	"bytes"
	"container/heap"
	"context"
	"net"
	"time"
)

// The timed work of every address a responder owns (gratuitous bursts,
// probes, re-probes) runs in one goroutine per responder, from a heap of
// tasks ordered by time. A goroutine and a context per address cost a
// speaker taking over 10,000 addresses at once about 100 MB of stacks for
// the second the bursts last; a task costs 40 bytes.
//
// Each owned address has at most one pending task. Scheduling another
// (a re-announcement, a probe cut short by a claim) bumps the address's
// generation, and a task of an older generation, or of an address
// withdrawn meanwhile, does nothing when it comes due.

// taskKind is what a task does.
type taskKind uint8

const (
	// taskGratuitous sends the next gratuitous announcement of a burst.
	taskGratuitous taskKind = iota
	// taskProbe sends the next probe of a round, or ends the round.
	taskProbe
)

type task struct {
	at   time.Time
	o    *owned
	gen  uint32
	kind taskKind
}

type taskHeap []task

func (h taskHeap) Len() int           { return len(h) }
func (h taskHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h taskHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *taskHeap) Push(x any)        { *h = append(*h, x.(task)) }
func (h *taskHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

// scheduleLocked makes kind the next work of o at at, replacing what was
// scheduled for it. r.mu is held.
func (r *Responder) scheduleLocked(o *owned, kind taskKind, at time.Time) {
	o.gen++
	heap.Push(&r.tasks, task{at: at, o: o, gen: o.gen, kind: kind})
	if r.tasks[0].o == o && r.tasks[0].gen == o.gen {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// cancelLocked drops the pending work of o. r.mu is held.
func (r *Responder) cancelLocked(o *owned) { o.gen++ }

// runTasks runs tasks as they come due until ctx ends.
func (r *Responder) runTasks(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var due []task
	for {
		due = due[:0]
		now := time.Now()
		r.mu.Lock()
		for len(r.tasks) > 0 && !r.tasks[0].at.After(now) && len(due) < 256 {
			t := heap.Pop(&r.tasks).(task)
			if r.owned[t.o.ip] == t.o && t.o.gen == t.gen {
				due = append(due, t)
			}
		}
		wait := time.Hour
		if len(r.tasks) > 0 {
			wait = r.tasks[0].at.Sub(now)
		}
		if cap(r.tasks) > 1024 && len(r.tasks) < cap(r.tasks)/4 {
			r.tasks = append(taskHeap(nil), r.tasks...) // give a burst's memory back
		}
		r.mu.Unlock()
		for _, t := range due {
			if ctx.Err() != nil {
				return
			}
			switch t.kind {
			case taskGratuitous:
				r.gratuitousStep(t)
			case taskProbe:
				r.probeStep(t)
			}
		}
		if len(due) > 0 {
			continue // more may be due
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-timer.C:
		}
	}
}

// startBurstLocked starts the gratuitous announcements of o now. r.mu is
// held.
func (r *Responder) startBurstLocked(o *owned) {
	o.burst = 0
	r.scheduleLocked(o, taskGratuitous, time.Now())
}

// gratuitousStep sends the gratuitous announcement due and schedules the
// next one of gratuitousSchedule.
func (r *Responder) gratuitousStep(t task) {
	r.mu.Lock()
	o := t.o
	if r.owned[o.ip] != o || o.gen != t.gen || o.state != stateAnswering || r.leaving {
		r.mu.Unlock()
		return
	}
	if o.burst++; int(o.burst) < len(gratuitousSchedule) {
		// Due times count from the burst's start, which was due at
		// t.at minus the previous step.
		r.scheduleLocked(o, taskGratuitous, t.at.Add(gratuitousSchedule[o.burst]-gratuitousSchedule[o.burst-1]))
	}
	r.mu.Unlock()
	if err := r.sendGratuitous(o.ip); err != nil {
		r.log.Error(err, "sending gratuitous announcement", "address", o.ip.String())
		return
	}
	r.Stats.Gratuitous.Add(1)
}

// yieldGapLocked is the pause between two probe rounds of a yielded
// address: yieldRoundInterval, longer when many addresses are yielded, so
// that a responder sends at most about maxYieldProbeRate probes a second
// (a partition of a cluster with thousands of addresses must not flood
// the LAN). r.mu is held.
func (r *Responder) yieldGapLocked() time.Duration {
	yielded := 0
	for _, o := range r.owned {
		if o.state == stateYielded {
			yielded++
		}
	}
	return max(yieldRoundInterval, time.Duration(yielded)*time.Second/maxYieldProbeRate)
}

// startProbeLocked starts a probe round of o now. r.mu is held.
func (r *Responder) startProbeLocked(o *owned, at time.Time) {
	o.probesSent = 0
	if o.probe == nil {
		o.probe = &probeState{reprobe: r.opts.ReprobeInterval}
	}
	o.probe.claim, o.probe.claimBySpeaker = nil, false
	r.scheduleLocked(o, taskProbe, at)
}

// probeStep sends the next probe of a round (probeCount of them,
// probeInterval apart), or, after the last one's probeWait or as soon as
// another host claims the address, ends the round: the address is
// answered when it is free, and probed again later when it is not.
func (r *Responder) probeStep(t task) {
	r.mu.Lock()
	o := t.o
	if r.owned[o.ip] != o || o.gen != t.gen || o.state == stateAnswering {
		r.mu.Unlock()
		return
	}
	if o.probe.claim == nil && o.probesSent < probeCount {
		o.probesSent++
		next := probeInterval
		if o.probesSent == probeCount {
			next = probeWait
		}
		r.scheduleLocked(o, taskProbe, time.Now().Add(next))
		r.mu.Unlock()
		if err := r.sendProbe(o.ip); err != nil {
			// Failing open: an address that cannot be probed is
			// announced, as it was before probing existed.
			r.log.Error(err, "probing; announcing without", "address", o.ip.String())
			r.mu.Lock()
			if r.owned[o.ip] == o && o.state != stateAnswering {
				r.cancelLocked(o)
				r.endProbeLocked(o, nil)
			} else {
				r.mu.Unlock()
			}
		}
		return
	}
	r.endProbeLocked(o, o.probe.claim)
}

// endProbeLocked ends a probe round of o: other is the MAC of the host
// that claimed the address, nil when it is free. It unlocks r.mu before
// telling anyone.
func (r *Responder) endProbeLocked(o *owned, other net.HardwareAddr) {
	o.probesSent = 0
	if o.state == stateYielded && (other != nil && o.probe.claimBySpeaker || other == nil && o.probe.silentRounds+1 < yieldSilentRounds) {
		// The speaker it yielded to still answers, or may have missed
		// one round (a busy process, a lost frame): watch on.
		if other == nil {
			o.probe.silentRounds++
		} else {
			o.probe.silentRounds = 0
		}
		r.startProbeLocked(o, time.Now().Add(r.yieldGapLocked()))
		r.mu.Unlock()
		return
	}
	if other == nil && o.state == stateYielded {
		r.log.Info("the speaker this node yielded an address to no longer answers for it; taking it over", "address", o.ip.String())
	}
	if other == nil {
		o.state = stateAnswering
		reported := o.probe.reported
		o.probe = nil // answered: nothing of probing is needed any more
		r.startBurstLocked(o)
		r.mu.Unlock()
		if reported != nil {
			r.log.Info("address conflict over; announcing", "address", o.ip.String())
			r.report(Conflict{Kind: ConflictResolved, Address: o.ip})
		}
		if r.opts.OnProbed != nil {
			r.opts.OnProbed(o.ip)
		}
		return
	}
	o.state = stateConflict
	r.startProbeLocked(o, time.Now().Add(o.probe.reprobe))
	o.probe.reprobe = min(2*o.probe.reprobe, maxReprobeFactor*r.opts.ReprobeInterval)
	isNew := !bytes.Equal(other, o.probe.reported)
	if isNew {
		o.probe.reported = other
	}
	r.mu.Unlock()
	if isNew {
		r.Stats.Conflicts.Add(1)
		r.log.Info("address in use by another host; not announcing it", "address", o.ip.String(), "mac", other.String())
		r.report(Conflict{Kind: ConflictProbed, Address: o.ip, MAC: other})
	}
}
