package startuppages

import "time"

// After a burst of work (thousands of Services planned and their statuses
// written) the code that did it and the heap it grew stay resident until
// the next periodic release, up to Options.Interval later. settleWatch
// decides when such a burst is over, from the Go heap's cumulative
// allocation counter sampled about once a second, so that the release can
// follow it within Options.Settle.
type settleWatch struct {
	// settle is how long the program must have been quiet.
	settle time.Duration
	// burst is how much must have been allocated since the last release
	// for the work to count as a burst: a metrics scrape or a single
	// Service change is not one.
	burst uint64
	// quietRate is the allocation rate, in bytes per second, below which
	// the program counts as quiet: a speaker that only gossips and
	// answers ARP allocates a few KiB per second.
	quietRate uint64

	sinceRelease uint64    // allocated since the last release
	lastTotal    uint64    // the counter at the last sample
	lastSample   time.Time // when it was taken; zero before the first
	quietSince   time.Time // the start of the current quiet stretch
}

// released resets the watch at a release, whatever triggered it; total is
// the allocation counter then.
func (w *settleWatch) released(now time.Time, total uint64) {
	w.sinceRelease = 0
	w.lastTotal, w.lastSample = total, now
	w.quietSince = now
}

// sample takes the counter's value total at now and tells whether the
// program has just settled after a burst.
func (w *settleWatch) sample(now time.Time, total uint64) bool {
	if w.lastSample.IsZero() {
		w.released(now, total)
		return false
	}
	if total < w.lastTotal { // not a cumulative counter: start over
		w.released(now, total)
		return false
	}
	delta := total - w.lastTotal
	elapsed := now.Sub(w.lastSample)
	w.sinceRelease += delta
	w.lastTotal, w.lastSample = total, now
	if elapsed <= 0 || float64(delta) >= float64(w.quietRate)*elapsed.Seconds() {
		w.quietSince = now
		return false
	}
	return w.sinceRelease >= w.burst && now.Sub(w.quietSince) >= w.settle
}
