package membership

import (
	"bytes"
	"context"
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// Restart holds. A member stopped to be started again on the same node (a
// DaemonSet's rolling update) says so (Restart) and asks the others to
// hold it for a while: they keep counting it as live (Held), so that its
// addresses stay where they are instead of moving to another node and
// back, and its node goes on forwarding what reaches it. Each such move
// resets the connections in flight; the node's kernel and its forwarding
// do not care that the speaker restarts. The hold ends when its time is
// up, when the member's node stops answering connects (it went down
// rather than its process: the usual take-over then), or when the member
// leaves for good. Whether a restarted member may be elected again is the
// caller's business (its metadata): the hold only keeps it from being
// replaced meanwhile.
const (
	// restartingPrefix starts the user message "this member restarts",
	// followed by its name, a zero byte and the hold in milliseconds.
	restartingPrefix = "barelb/restarting\x00"
	// MaxRestartHold bounds the hold a member may ask for.
	MaxRestartHold = time.Minute
	// restartHoldCheck is how often a holding member connects to a held
	// member's node: a refusal (no process listens, the kernel answers)
	// or an answer (the new process listens) keeps the hold, unanswered
	// SYNs end it.
	restartHoldCheck = 100 * time.Millisecond
)

func encodeRestarting(self string, hold time.Duration) []byte {
	return []byte(restartingPrefix + self + "\x00" + strconv.FormatInt(hold.Milliseconds(), 10))
}

func decodeRestarting(b []byte) (name string, hold time.Duration, ok bool) {
	rest, ok := bytes.CutPrefix(b, []byte(restartingPrefix))
	if !ok {
		return "", 0, false
	}
	n, ms, ok := bytes.Cut(rest, []byte{0})
	if !ok || len(n) == 0 {
		return "", 0, false
	}
	v, err := strconv.ParseInt(string(ms), 10, 64)
	if err != nil || v <= 0 {
		return "", 0, false
	}
	return string(n), min(time.Duration(v)*time.Millisecond, MaxRestartHold), true
}

// restartHold is one held member.
type restartHold struct {
	until  time.Time
	cancel context.CancelFunc
	// rejoined: the restarted member joined again. Its death from then
	// on is a death like any other: it ends the hold (Held,
	// endHoldIfBack).
	rejoined bool
}

// Restart tells the other members that this one stops to be started again
// on the same node, and asks them to hold it for hold (at most
// MaxRestartHold; see Held), then leaves memberlist as Leave does. It
// waits up to timeout (0: no limit) for the messages to go out. Call
// Shutdown afterwards.
func (m *Membership) Restart(hold, timeout time.Duration) error {
	return m.leave(encodeRestarting(m.fast.self, min(hold, MaxRestartHold)), timeout)
}

// Held names the members held over their restart now (see Restart): they
// said they restart, within their hold, and their node answers. One that
// joined again and is marked down since is not held: it died after its
// restart.
func (m *Membership) Held() []string {
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	var out []string
	now := time.Now()
	for name, h := range m.holds {
		if now.Before(h.until) && !(h.rejoined && m.fast.marked(name)) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// endHoldIfBack ends the hold of a member memberlist dropped after it
// joined again since its restart notice.
func (m *Membership) endHoldIfBack(name string) {
	m.metaMu.Lock()
	h := m.holds[name]
	if h == nil || !h.rejoined {
		m.metaMu.Unlock()
		return
	}
	delete(m.holds, name)
	m.metaMu.Unlock()
	h.cancel()
	m.log.Info("Member no longer held over its restart", "member", name, "because", "it went away again after its restart")
}

// restarting holds member name, which says it restarts, for hold. It is
// called from memberlist's packet handling (NotifyMsg), before the
// member's leave that follows the notice: it takes no lock that may be
// held while waiting on memberlist. A notice that comes after the leave
// holds the member too, at the address it had.
func (m *Membership) restarting(name string, hold time.Duration) {
	ap, ok := m.fast.lastAddress(name)
	if !ok {
		return // not a member this one knows: nothing to hold
	}
	ctx, cancel := context.WithTimeout(context.Background(), hold)
	h := &restartHold{until: time.Now().Add(hold), cancel: cancel}
	m.metaMu.Lock()
	if m.holdsEnded {
		m.metaMu.Unlock()
		cancel()
		return
	}
	if old := m.holds[name]; old != nil {
		old.cancel()
	}
	m.holds[name] = h
	delete(m.departed, name)
	m.metaMu.Unlock()
	m.log.Info("Member restarts; holding it", "member", name, "hold", hold.String())
	m.notify()
	go m.watchHold(ctx, name, ap, h)
}

// watchHold ends h when its time is up or name's node stops answering.
func (m *Membership) watchHold(ctx context.Context, name string, ap netip.AddrPort, h *restartHold) {
	why := "its time is up"
	ticker := time.NewTicker(restartHoldCheck)
	defer ticker.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			if ctx.Err() == context.Canceled {
				return // replaced by a newer hold, or shut down
			}
			break loop
		case <-ticker.C:
			if r := kernelDial(ap, m.fast.window, m.fast.minSilence); r.conn != nil {
				_ = r.conn.Close()
			} else if r.verdict == verdictUnanswered {
				why = "its node stopped answering (" + r.silence.Round(time.Millisecond).String() + " of silence)"
				break loop
			}
		}
	}
	m.metaMu.Lock()
	if m.holds[name] == h {
		delete(m.holds, name)
	}
	m.metaMu.Unlock()
	h.cancel()
	m.log.Info("Member no longer held over its restart", "member", name, "because", why)
	m.notify()
}

// endHolds stops every hold's check (Shutdown).
func (m *Membership) endHolds() {
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	m.holdsEnded = true
	for name, h := range m.holds {
		h.cancel()
		delete(m.holds, name)
	}
}
