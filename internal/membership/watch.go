package membership

import (
	"context"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// Watch streams: each member holds an idle TCP connection to the
// memberlist port of a few other members (its successors in the ring of
// member names). When a speaker's process dies (SIGKILL, a crash, the OOM
// killer) its kernel closes its sockets at once and the peer's end of the
// stream reads EOF or a reset within a round trip. The watcher then checks
// with a connect of its own whether anything still listens: "refused" is
// the evidence a probe's TCP fallback would have given, had memberlist
// probed the member, only it comes a millisecond after the death instead
// of up to a probe interval plus the UDP ping's timeout later. The mark is
// shared as a hint, which every other member verifies with its own dial
// as before. A node cut off the network closes nothing: that stays with
// the probes. A stalled process (SIGSTOP, a long GC pause) keeps its
// sockets open and is never suspected here.
//
// A watch stream opens with watchMagic, a byte no memberlist stream starts
// with (its message types are below 0x10, a label header is 244), so the
// accepting member's transport tells it from memberlist's own streams.
const (
	watchMagic = 0xB7
	// watchFanout is how many members each member watches: enough that a
	// death is seen even when some watchers are busy, few enough that 250
	// members cost each speaker a handful of sockets.
	watchFanout = 3
	// watchRedial is how soon a watcher tries again when its stream
	// could not be opened or ended with its member gone: a restarted
	// speaker is watched again within it.
	watchRedial = 100 * time.Millisecond
	// watchRetry and watchRetryMax pace a watcher whose stream keeps
	// ending while the member answers (an older speaker that closes the
	// unknown stream).
	watchRetry    = time.Second
	watchRetryMax = time.Minute
	// watchStable is how long a stream must have lasted for its end to
	// reset the pace.
	watchStable = 10 * time.Second
	// watchRecheck is the first pause before the connects that follow
	// one answered after a stream ended. A dying process's kernel closes its
	// sockets one by one: the stream may end while the listener still
	// completes handshakes for a few milliseconds (the order follows the
	// descriptor numbers, which reuse makes random). A live member that
	// closed the stream answers all of them; a dead one soon refuses.
	watchRecheck = 5 * time.Millisecond
	// watchRechecks is how many connects follow, each pause four times
	// the one before it: 5, 20 and 80 ms.
	watchRechecks = 3
	// maxWatchedBy bounds the inbound watch streams a member holds: its
	// own fanout's worth from each of many members is far below it.
	maxWatchedBy = 1024
)

// watches runs this member's watchers and holds the streams others opened.
type watches struct {
	fp          *fastPath
	log         logr.Logger
	dialTimeout time.Duration

	mu      sync.Mutex
	closed  bool
	out     map[string]*watcher // by member name
	inbound map[net.Conn]bool
}

// watcher is one member being watched.
type watcher struct {
	addr   netip.AddrPort
	cancel context.CancelFunc
	// kick ends a pause between attempts: the member is back.
	kick chan struct{}
}

func newWatches(fp *fastPath, log logr.Logger, dialTimeout time.Duration) *watches {
	return &watches{fp: fp, log: log, dialTimeout: dialTimeout,
		out: map[string]*watcher{}, inbound: map[net.Conn]bool{}}
}

// watchedBy picks the members self watches among addrs (self's included):
// the fanout names that follow self in name order, wrapping around.
func watchedBy(self string, addrs map[string]netip.AddrPort) map[string]netip.AddrPort {
	names := make([]string, 0, len(addrs))
	for n := range addrs {
		if n != self {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	// The first name after self, then on around the ring.
	start, _ := slices.BinarySearch(names, self)
	out := map[string]netip.AddrPort{}
	for i := 0; i < len(names) && i < watchFanout; i++ {
		n := names[(start+i)%len(names)]
		out[n] = addrs[n]
	}
	return out
}

// update starts and stops watchers so that exactly want are watched.
// It does not block: memberlist's events call it with their lock held.
func (w *watches) update(want map[string]netip.AddrPort) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	for name, wt := range w.out {
		if ap, ok := want[name]; !ok || ap != wt.addr {
			wt.cancel()
			delete(w.out, name)
		}
	}
	for name, ap := range want {
		if w.out[name] != nil {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		wt := &watcher{addr: ap, cancel: cancel, kick: make(chan struct{}, 1)}
		w.out[name] = wt
		go w.run(ctx, name, wt)
	}
}

// back tells name's watcher, if any, that the member answers again (it
// rejoined, or acked a ping): a restarted speaker is watched at once, not
// after the pause its death ran up.
func (w *watches) back(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if wt := w.out[name]; wt != nil {
		select {
		case wt.kick <- struct{}{}:
		default:
		}
	}
}

// run keeps a watch stream open to member name at ap until ctx ends, and
// checks the member whenever the stream ends.
func (w *watches) run(ctx context.Context, name string, wt *watcher) {
	ap := wt.addr
	backoff := watchRetry
	for ctx.Err() == nil {
		opened, err := w.hold(ctx, ap, wt.kick)
		if ctx.Err() != nil {
			return
		}
		// A stream that could not be opened is no evidence here: a
		// firewall rejecting TCP on the port refuses it as a dead
		// process would, while memberlist's UDP probes still reach the
		// member (the probes' own TCP fallback judges only after a
		// ping went unanswered). Only the end of a stream that was
		// open is news.
		pause := watchRedial
		if err == nil {
			// The stream ended: the member's process is gone, or it
			// closed the stream. Dials of our own tell which.
			v := w.checkEnded(ctx, name)
			switch {
			case v == verdictAnswered && time.Since(opened) < watchStable:
				// A live member that closes the stream: an older
				// speaker. Slow down.
				pause, backoff = backoff, min(2*backoff, watchRetryMax)
				w.log.V(1).Info("Watch stream closed by a live member; retrying later", "member", name, "after", pause.String())
			case v == verdictAnswered:
				backoff = watchRetry
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-wt.kick:
		case <-time.After(pause):
		}
	}
}

// checkEnded checks member name after its watch stream ended, and up to
// watchRechecks times again while it answers; it returns the last
// verdict.
func (w *watches) checkEnded(ctx context.Context, name string) verdict {
	v := w.fp.check(name, "watch stream ended", true)
	pause := watchRecheck
	for range watchRechecks {
		if v != verdictAnswered {
			return v
		}
		select {
		case <-ctx.Done():
			return verdictUnknown
		case <-time.After(pause):
		}
		pause *= 4
		v = w.fp.check(name, "watch stream ended", true)
	}
	return v
}

// hold opens a watch stream to ap and returns when it ends: when it was
// opened, and nil when the peer closed or reset it, the dial's error when
// it could not be opened, or ctx's end. A kick that came before the stream
// opened is spent: the member is watched.
func (w *watches) hold(ctx context.Context, ap netip.AddrPort, kick chan struct{}) (time.Time, error) {
	d := net.Dialer{Timeout: w.dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", ap.String())
	if err != nil {
		return time.Time{}, err
	}
	opened := time.Now()
	select {
	case <-kick:
	default:
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	defer conn.Close()
	if _, err := conn.Write([]byte{watchMagic}); err != nil {
		return opened, nil // reset already: the peer's end is gone
	}
	// Nothing is ever sent back: the read ends with the stream.
	_, _ = io.Copy(io.Discard, conn)
	return opened, ctx.Err()
}

// accept keeps an inbound watch stream open until its watcher closes it
// or this member shuts down: our process ending is what it watches for.
func (w *watches) accept(c net.Conn) {
	w.mu.Lock()
	if w.closed || len(w.inbound) >= maxWatchedBy {
		w.mu.Unlock()
		_ = c.Close()
		return
	}
	w.inbound[c] = true
	w.mu.Unlock()
	go func() {
		_, _ = io.Copy(io.Discard, c)
		_ = c.Close()
		w.mu.Lock()
		delete(w.inbound, c)
		w.mu.Unlock()
	}()
}

// close stops every watcher and closes every inbound stream.
func (w *watches) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	for name, wt := range w.out {
		wt.cancel()
		delete(w.out, name)
	}
	for c := range w.inbound {
		_ = c.Close()
	}
}

// peekedConn gives back the first byte the transport read to tell a watch
// stream from memberlist's.
type peekedConn struct {
	net.Conn
	first []byte
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if len(c.first) > 0 {
		n := copy(p, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
