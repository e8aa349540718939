package lab

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Prober is a client's request loop, the measure of an outage as a user
// sees it: a GET of one URL every ProbeInterval, a new connection each
// time (so that every request resolves the address afresh through the
// LAN), ProbeTimeout each; it records when requests succeeded and what
// answered.
type Prober struct {
	url  string
	hc   *http.Client
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	ok      []time.Time
	failed  int
	errors  []string
	answers map[string]int
	started time.Time
}

// The request loop's pace: a gap in the answers is measured to about
// ProbeInterval, and a request a dead node does not answer costs
// ProbeTimeout.
const (
	ProbeInterval = 10 * time.Millisecond
	ProbeTimeout  = 200 * time.Millisecond
	// maxProbeErrors is how many failures a ProbeResult quotes.
	maxProbeErrors = 5
)

// StartProber starts a request loop from host (e.g. "client") to url;
// Stop ends it.
func (l *Lab) StartProber(host, url string) *Prober {
	return l.StartProberTimeout(host, url, ProbeTimeout)
}

// StartProberTimeout is StartProber with another timeout per request:
// behind a router, where a timeout is a failure to explain rather than a
// gap to measure.
func (l *Lab) StartProberTimeout(host, url string, timeout time.Duration) *Prober {
	return startProber(url, l.HTTPClient(host, timeout))
}

// StartProberResolving is StartProber with every request sent to ip and
// the URL's host name in the Host header only (HTTPClientResolving): a
// request loop to one host of an ingress controller.
func (l *Lab) StartProberResolving(host, url, ip string) *Prober {
	return startProber(url, l.HTTPClientResolving(host, ProbeTimeout, ip))
}

func startProber(url string, hc *http.Client) *Prober {
	p := &Prober{url: url, hc: hc,
		stop: make(chan struct{}), done: make(chan struct{}), answers: map[string]int{}}
	p.started = time.Now()
	go p.run()
	return p
}

func (p *Prober) run() {
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
			if len(p.errors) < maxProbeErrors {
				p.errors = append(p.errors, now.Format("15:04:05.000")+" "+err.Error())
			}
		} else {
			p.ok = append(p.ok, now)
			p.answers[strings.TrimSpace(string(body))]++
		}
		p.mu.Unlock()
		select {
		case <-p.stop:
			return
		case <-time.After(ProbeInterval):
		}
	}
}

// OKSince reports whether a request succeeded after t.
func (p *Prober) OKSince(t time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ok) > 0 && p.ok[len(p.ok)-1].After(t)
}

// ProbeResult is what a Prober saw.
type ProbeResult struct {
	OK, Failed int
	// Outage is the longest time between two successful answers (or from
	// the start to the first, or from the last to the end).
	Outage time.Duration
	// OutageAt is when the longest gap began, after the prober started.
	OutageAt time.Duration
	// Answers counts the bodies (trimmed) of the successful answers.
	Answers map[string]int
	// Errors quotes the first few failures, each with its time.
	Errors []string
}

func (r ProbeResult) String() string {
	return fmt.Sprintf("%d ok, %d failed, longest gap %v (from +%v), answers %v",
		r.OK, r.Failed, r.Outage.Round(time.Millisecond), r.OutageAt.Round(time.Millisecond), r.Answers)
}

// Stop ends the loop and returns what it saw.
func (p *Prober) Stop() ProbeResult {
	close(p.stop)
	<-p.done
	end := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	r := ProbeResult{OK: len(p.ok), Failed: p.failed, Answers: p.answers, Errors: p.errors}
	prev := p.started
	for _, t := range append(append([]time.Time(nil), p.ok...), end) {
		if gap := t.Sub(prev); gap > r.Outage {
			r.Outage, r.OutageAt = gap, prev.Sub(p.started)
		}
		prev = t
	}
	return r
}
