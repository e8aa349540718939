package membership

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// maxParallelJoins bounds the concurrent TCP exchanges of one join round, so
// a long peer list with unreachable nodes costs about one TCPTimeout per
// maxParallelJoins peers instead of one per peer.
const maxParallelJoins = 8

// Join contacts peers ("ip:port", or "ip" for this member's port) and
// returns how many answered. Peers equal to this member's own address are
// ignored, so the full list of speaker addresses may be passed.
//
// Join keeps working in the background until ctx ends, Leave or Shutdown
// is called, or Join is called again (with a new peer list): while no other
// member is known it retries every few hundred milliseconds, backing off to
// Timing.RejoinInterval, since at DaemonSet start the other speakers may
// not be up yet; after that it retries peers that are not members every
// RejoinInterval, which merges the two sides of a healed partition.
//
// That no peer answered is not an error: the background retries take care
// of it. Join fails on a malformed peer, after Leave or Shutdown, or when
// ctx ends before the first round is over.
func (m *Membership) Join(ctx context.Context, peers []string) (int, error) {
	targets, err := m.parsePeers(peers)
	if err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("membership: join: %w", err)
	}

	m.mu.Lock()
	if m.closed || m.left {
		m.mu.Unlock()
		return 0, ErrClosed
	}
	m.stopJoinLocked()
	loopCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	m.stopJoin = func() {
		cancel()
		<-done
	}
	m.mu.Unlock()

	n := m.joinRound(loopCtx, targets)
	if n > 0 || len(targets) == 0 {
		m.log.Info("Joined", "answered", n, "peers", len(targets), "members", len(m.list.Members()))
	} else {
		m.log.Info("No peer answered yet; retrying in the background", "peers", len(targets))
	}
	go func() {
		defer close(done)
		m.rejoinLoop(loopCtx, targets)
	}()
	if err := ctx.Err(); err != nil {
		return n, fmt.Errorf("membership: join: %w", err)
	}
	return n, nil
}

// stopJoinLocked stops the background join and waits for it; m.mu held.
// It waits at most one TCPTimeout (a join in flight).
func (m *Membership) stopJoinLocked() {
	if m.stopJoin != nil {
		m.stopJoin()
		m.stopJoin = nil
	}
}

func (m *Membership) parsePeers(peers []string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, p := range peers {
		ap, err := netip.ParseAddrPort(p)
		if err != nil {
			a, aerr := netip.ParseAddr(p)
			if aerr != nil {
				return nil, fmt.Errorf("membership: peer %q: want ip:port or ip: %w", p, err)
			}
			ap = netip.AddrPortFrom(a, m.self.Port())
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if ap == m.self {
			continue
		}
		out = append(out, ap)
	}
	return out, nil
}

// rejoinLoop runs until ctx ends; see Join.
func (m *Membership) rejoinLoop(ctx context.Context, targets []netip.AddrPort) {
	if len(targets) == 0 {
		return
	}
	backoff := m.timing.ProbeInterval
	for {
		wait := m.timing.RejoinInterval
		if len(m.list.Members()) < 2 {
			wait = backoff
			backoff = min(2*backoff, m.timing.RejoinInterval)
		} else {
			backoff = m.timing.ProbeInterval
		}
		// Up to 20% jitter, so restarted speakers do not retry in step.
		wait += rand.N(wait/5 + 1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if missing := m.missing(targets); len(missing) > 0 {
			if n := m.joinRound(ctx, missing); n > 0 {
				m.log.Info("Rejoined peers", "answered", n, "tried", len(missing), "members", len(m.list.Members()))
			}
		}
	}
}

// missing returns the targets that are not the address of a live member.
func (m *Membership) missing(targets []netip.AddrPort) []netip.AddrPort {
	live := make(map[netip.AddrPort]bool)
	for _, ap := range m.fast.addresses() {
		live[ap] = true
	}
	var out []netip.AddrPort
	for _, t := range targets {
		if !live[t] {
			out = append(out, t)
		}
	}
	return out
}

// joinRound contacts each target once (a TCP push/pull of the full state),
// at most maxParallelJoins at a time, and returns how many answered.
func (m *Membership) joinRound(ctx context.Context, targets []netip.AddrPort) int {
	var (
		ok  atomic.Int32
		wg  sync.WaitGroup
		sem = make(chan struct{}, maxParallelJoins)
	)
	for _, t := range targets {
		select {
		case <-ctx.Done():
		case sem <- struct{}{}:
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := m.list.Join([]string{t.String()}); err != nil {
				m.log.V(1).Info("Peer did not answer", "peer", t.String(), "error", err.Error())
				return
			}
			ok.Add(1)
		}()
	}
	wg.Wait()
	return int(ok.Load())
}
