package compare

import (
	"errors"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/barelb/barelb/e2etest/lab"
)

// prober is the client's request loop: a GET of the URL every 10 ms, a new
// connection each time, 200 ms timeout; it records when requests
// succeeded (the same loop as e2etest/layer2's failover benchmarks).
type prober struct {
	hc      *http.Client
	url     string
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	ok      []time.Time
	failed  int
	started time.Time
}

func startProber(l *lab.Lab, url string) *prober {
	p := &prober{hc: l.HTTPClient("client", 200*time.Millisecond), url: url,
		stop: make(chan struct{}), done: make(chan struct{}), started: time.Now()}
	go p.run()
	return p
}

func (p *prober) run() {
	defer close(p.done)
	defer p.hc.CloseIdleConnections()
	for {
		resp, err := p.hc.Get(p.url)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
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
		}
		p.mu.Unlock()
		select {
		case <-p.stop:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// okSince reports whether a request succeeded after t.
func (p *prober) okSince(t time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ok) > 0 && p.ok[len(p.ok)-1].After(t)
}

// finish stops the loop and returns the longest time without a
// successful answer and the number of failed requests.
func (p *prober) finish() (outage time.Duration, failed int) {
	close(p.stop)
	<-p.done
	end := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	prev := p.started
	for _, t := range append(append([]time.Time(nil), p.ok...), end) {
		if gap := t.Sub(prev); gap > outage {
			outage = gap
		}
		prev = t
	}
	return outage, p.failed
}

// announcer asks the LAN who answers for ip: the node whose MAC the
// client's neighbour entry holds after a request ("" when none).
func announcer(l *lab.Lab, ip string) string {
	_, _ = l.Get("client", lab.URL(ip), time.Second)
	out, err := exec.Command("ip", "-n", l.ClientHost().Netns, "neigh", "show", ip).CombinedOutput()
	if err != nil {
		return ""
	}
	f := strings.Fields(string(out))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "lladdr" {
			return l.NodeOfMAC(f[i+1])
		}
	}
	return ""
}

// linkPort returns the bridge namespace and port of a host's link on a
// segment, to cut it (as a pulled cable) and restore it.
func linkPort(l *lab.Lab, host, segment string) (ns, port string, err error) {
	h, err := l.Host(host)
	if err != nil {
		return "", "", err
	}
	for _, ifc := range h.Interfaces {
		if ifc.Segment == segment {
			return l.State().Bridges[segment], ifc.Port, nil
		}
	}
	return "", "", errors.New(host + " has no link on " + segment)
}

func setLink(ns, port, state string) error {
	out, err := exec.Command("ip", "-n", ns, "link", "set", port, state).CombinedOutput()
	if err != nil {
		return errors.Join(err, errors.New(string(out)))
	}
	return nil
}
