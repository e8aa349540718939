package layer2_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/barelb/barelb/e2etest/lab"
)

// needsLab: see lab.NeedsLab.
func needsLab(tb testing.TB) { tb.Helper(); lab.NeedsLab(tb, "the layer-2 suite") }

// waitAnnouncer waits until the Service's ServiceL2Status names a node
// (this one unless want is empty) and returns it.
func waitAnnouncer(tb testing.TB, l *lab.Lab, svc, want string) string {
	tb.Helper()
	var node string
	lab.Eventually(tb, 30*time.Second, "ServiceL2Status of "+svc+" naming "+orAny(want), func() (bool, string) {
		var err error
		node, err = l.L2Announcer("default", svc)
		if err != nil {
			return false, err.Error()
		}
		return node != "" && (want == "" || node == want), "node " + orAny(node)
	})
	return node
}

func orAny(s string) string {
	if s == "" {
		return "any node"
	}
	return s
}

// nodeMAC is a node's MAC address on the LAN.
func nodeMAC(tb testing.TB, l *lab.Lab, node string) string {
	tb.Helper()
	h, err := l.Host(node)
	if err != nil {
		tb.Fatal(err)
	}
	return h.MAC(lab.SegmentLAN)
}

// clientNeighbour returns the MAC of the client's neighbour entry for ip
// and the entry's state ("" when there is none or it has no address). It
// runs `ip -n CLIENT neigh show IP`.
func clientNeighbour(l *lab.Lab, ip string) (mac, state string) {
	out, err := ipIn(l.ClientHost().Netns, "neigh", "show", ip)
	if err != nil {
		return "", ""
	}
	f := strings.Fields(out)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "lladdr" {
			mac = f[i+1]
		}
	}
	if len(f) > 0 {
		state = f[len(f)-1]
	}
	return mac, state
}

// ipIn runs ip -n NS ARGS.
func ipIn(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip -n %s %v: %w: %s", ns, args, err, out)
	}
	return string(out), nil
}

// waitServed waits until the client reaches ip and its neighbour entry
// for ip holds node's MAC, and returns the answers of n more requests.
func waitServed(tb testing.TB, l *lab.Lab, ip, node string, n int) map[string]int {
	tb.Helper()
	want := nodeMAC(tb, l, node)
	lab.Eventually(tb, 30*time.Second, fmt.Sprintf("the client reaching %s through %s (%s)", ip, node, want), func() (bool, string) {
		answer, err := l.Get("client", lab.URL(ip), time.Second)
		if err != nil {
			return false, err.Error()
		}
		mac, state := clientNeighbour(l, ip)
		return strings.EqualFold(mac, want), fmt.Sprintf("answer %q, neighbour %s %s (%s)", answer, mac, state, l.NodeOfMAC(mac))
	})
	seen := map[string]int{}
	for range n {
		answer, err := l.Get("client", lab.URL(ip), 2*time.Second)
		if err != nil {
			answer = "error: " + err.Error()
		}
		seen[answer]++
	}
	return seen
}

// prober requests a URL from the client every interval, one new
// connection each, and records when requests succeeded.
type prober struct {
	url      string
	interval time.Duration
	timeout  time.Duration
	hc       *http.Client
	stop     chan struct{}
	done     chan struct{}

	mu      sync.Mutex
	ok      []time.Time
	failed  int
	answers map[string]int
	started time.Time
}

func startProber(l *lab.Lab, url string) *prober {
	p := &prober{url: url, interval: 10 * time.Millisecond, timeout: 200 * time.Millisecond,
		stop: make(chan struct{}), done: make(chan struct{}), answers: map[string]int{}}
	p.hc = l.HTTPClient("client", p.timeout)
	p.started = time.Now()
	go p.run()
	return p
}

func (p *prober) run() {
	defer close(p.done)
	defer p.hc.CloseIdleConnections()
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		resp, err := p.hc.Get(p.url)
		var body []byte
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = errors.New(resp.Status)
			}
		}
		now := time.Now()
		p.mu.Lock()
		if err != nil {
			p.failed++
		} else {
			p.ok = append(p.ok, now)
			p.answers[strings.TrimSpace(string(body))]++
		}
		p.mu.Unlock()
		select {
		case <-p.stop:
			return
		case <-time.After(p.interval):
		}
	}
}

// probeResult is what a prober saw.
type probeResult struct {
	OK, Failed int
	// Outage is the longest time between two successful answers (or from
	// the start to the first, or from the last to the end).
	Outage time.Duration
	// OutageAt is when the longest gap began, after the prober started.
	OutageAt time.Duration
	Answers  map[string]int
}

func (r probeResult) String() string {
	return fmt.Sprintf("%d ok, %d failed, longest gap %v (from +%v), answers %v",
		r.OK, r.Failed, r.Outage.Round(time.Millisecond), r.OutageAt.Round(time.Millisecond), r.Answers)
}

func (p *prober) Stop() probeResult {
	close(p.stop)
	<-p.done
	end := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	r := probeResult{OK: len(p.ok), Failed: p.failed, Answers: p.answers}
	prev := p.started
	for _, t := range append(append([]time.Time(nil), p.ok...), end) {
		if gap := t.Sub(prev); gap > r.Outage {
			r.Outage, r.OutageAt = gap, prev.Sub(p.started)
		}
		prev = t
	}
	return r
}
