// Command vulngate reads govulncheck's JSON output (-format json) on its
// standard input and fails when the code calls a vulnerable symbol that
// the accepted list does not name: `make lint` runs it. govulncheck itself
// has no way to accept a finding, and one reported vulnerability has no
// fixed version barelb can take yet; the list says why for each. An
// accepted vulnerability that is no longer reported fails too, so the
// list never outlives its reason.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

func main() {
	acceptedFile := flag.String("accepted", "", "file of accepted vulnerabilities: an OSV ID and the reason on each line, # comments")
	flag.Parse()
	accepted := map[string]string{}
	if *acceptedFile != "" {
		b, err := os.ReadFile(*acceptedFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "vulngate:", err)
			os.Exit(2)
		}
		if accepted, err = parseAccepted(string(b)); err != nil {
			fmt.Fprintf(os.Stderr, "vulngate: %s: %v\n", *acceptedFile, err)
			os.Exit(2)
		}
	}
	called, err := calledVulns(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulngate: reading govulncheck's output:", err)
		os.Exit(2)
	}
	v := judge(called, accepted)
	for _, line := range v.report() {
		fmt.Println(line)
	}
	if !v.ok() {
		os.Exit(1)
	}
}

// finding is the part of a govulncheck JSON finding the gate reads.
type finding struct {
	OSV          string  `json:"osv"`
	FixedVersion string  `json:"fixed_version"`
	Trace        []frame `json:"trace"`
}

type frame struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Package  string `json:"package"`
	Function string `json:"function"`
	Receiver string `json:"receiver"`
}

// symbol names the vulnerable function a frame is in.
func (f frame) symbol() string {
	if f.Receiver != "" {
		return f.Package + "." + strings.TrimPrefix(f.Receiver, "*") + "." + f.Function
	}
	return f.Package + "." + f.Function
}

// calledVulns reads govulncheck's JSON stream and returns the
// vulnerabilities the code calls (a finding at symbol level: its first
// frame names a function), each with one example finding. Findings at
// module or package level only (imported, never called) do not count,
// as in govulncheck's own exit code.
func calledVulns(r io.Reader) (map[string]finding, error) {
	dec := json.NewDecoder(bufio.NewReader(r))
	out := map[string]finding{}
	for {
		var msg struct {
			Finding *finding `json:"finding"`
		}
		err := dec.Decode(&msg)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		f := msg.Finding
		if f == nil || len(f.Trace) == 0 || f.Trace[0].Function == "" {
			continue
		}
		if _, ok := out[f.OSV]; !ok {
			out[f.OSV] = *f
		}
	}
}

// parseAccepted reads "ID reason" lines; blank lines and # comments are
// skipped. Every ID needs a reason.
func parseAccepted(s string) (map[string]string, error) {
	out := map[string]string{}
	for i, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, reason, _ := strings.Cut(line, " ")
		if reason = strings.TrimSpace(reason); reason == "" {
			return nil, fmt.Errorf("line %d: %s has no reason", i+1, id)
		}
		if _, dup := out[id]; dup {
			return nil, fmt.Errorf("line %d: %s is listed twice", i+1, id)
		}
		out[id] = reason
	}
	return out, nil
}

// verdict is what the gate makes of a scan.
type verdict struct {
	unaccepted []finding
	accepted   []string // "ID: reason"
	stale      []string // accepted IDs no longer reported
}

func judge(called map[string]finding, accepted map[string]string) verdict {
	var v verdict
	for id, f := range called {
		if reason, ok := accepted[id]; ok {
			v.accepted = append(v.accepted, id+" (accepted: "+reason+")")
			continue
		}
		v.unaccepted = append(v.unaccepted, f)
	}
	for id := range accepted {
		if _, ok := called[id]; !ok {
			v.stale = append(v.stale, id)
		}
	}
	slices.SortFunc(v.unaccepted, func(a, b finding) int { return strings.Compare(a.OSV, b.OSV) })
	slices.Sort(v.accepted)
	slices.Sort(v.stale)
	return v
}

func (v verdict) ok() bool { return len(v.unaccepted) == 0 && len(v.stale) == 0 }

func (v verdict) report() []string {
	var out []string
	for _, f := range v.unaccepted {
		top := f.Trace[0]
		fixed := f.FixedVersion
		if fixed == "" {
			fixed = "no fixed version"
		}
		out = append(out, fmt.Sprintf("VULNERABLE: %s in %s@%s (fixed in: %s), called: %s; see https://pkg.go.dev/vuln/%s",
			f.OSV, top.Module, top.Version, fixed, top.symbol(), f.OSV))
	}
	for _, a := range v.accepted {
		out = append(out, "called but "+a)
	}
	for _, id := range v.stale {
		out = append(out, fmt.Sprintf("STALE: %s is accepted but no longer reported; remove it from the accepted list", id))
	}
	if v.ok() {
		out = append(out, "no vulnerable code called beyond the accepted list")
	}
	return out
}
