package compare

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/barelb/barelb/e2etest/lab"
)

func TestMain(m *testing.M) {
	lab.RunHelperMode()
	// The lab's clients log nothing worth reading here.
	ctrllog.SetLogger(logr.Discard())
	os.Exit(m.Run())
}

// sizesFromEnv reads BARELB_COMPARE_SERVICES and BARELB_COMPARE_ROUNDS;
// without them the run is the smoke run of `make test`.
func sizesFromEnv(tb testing.TB) sizes {
	s := sizes{Services: 20, Rounds: 1}
	for _, v := range []struct {
		env string
		to  *int
	}{{"BARELB_COMPARE_SERVICES", &s.Services}, {"BARELB_COMPARE_ROUNDS", &s.Rounds}} {
		if raw := os.Getenv(v.env); raw != "" {
			n, err := strconv.Atoi(raw)
			if err != nil || n < 1 {
				tb.Fatalf("%s %q: want a positive number", v.env, raw)
			}
			*v.to = n
		}
	}
	return s
}

// TestCompare runs MetalLB, then barelb, each in a lab of its own built
// the same way, on the same scenarios, and prints the table (see the
// package comment). At full size it is `make compare`:
//
//	BARELB_COMPARE_SERVICES=5000 BARELB_COMPARE_ROUNDS=10 go test -v -timeout=120m -run='^TestCompare$' ./e2etest/compare/
func TestCompare(t *testing.T) {
	lab.NeedsLab(t, "the comparison with MetalLB")
	size := sizesFromEnv(t)
	ml, err := newMetalLB()
	if err != nil {
		t.Fatal(err)
	}
	impls := []implementation{ml, barelb{}}
	res := newResults()
	var names []string
	for _, impl := range impls {
		names = append(names, impl.Name())
	}
	// BARELB_COMPARE_ONLY=MetalLB or barelb runs one column (e.g. to
	// finish a run cut short).
	only := os.Getenv("BARELB_COMPARE_ONLY")
	for _, impl := range impls {
		if only != "" && !strings.EqualFold(only, strings.Fields(impl.Name())[0]) {
			continue
		}
		t.Run(strings.Fields(impl.Name())[0], func(t *testing.T) {
			measure(t, impl, res, size)
		})
		// What is measured so far, in case a later step fails.
		var b strings.Builder
		res.write(&b, names)
		fmt.Printf("\nafter %s:\n%s", impl.Name(), b.String())
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n%d Services pending + %d assigned, %d round(s) per failover and family; ratio = %s / %s\n\n",
		size.Services, size.Services, size.Rounds, names[0], names[1])
	res.write(&b, names)
	// The table goes to stdout as well: `make compare` tees it, and a
	// test's log is cut in -v output of long runs.
	fmt.Print(b.String())
	t.Log(b.String())
}

func measure(t *testing.T, impl implementation, res *results, size sizes) {
	ctx := context.Background()
	began := time.Now()
	l := lab.Start(t, impl.LabOptions())
	if err := impl.Install(ctx, l); err != nil {
		t.Fatalf("%s: %v", impl.Name(), err)
	}
	t.Logf("%s running in lab %s after %v", impl.Name(), l.Prefix(), time.Since(began).Round(time.Millisecond))
	r := &run{tb: t, ctx: ctx, l: l, impl: impl, res: res, size: size}
	ips := r.layer2()
	r.failover(ips)
	r.bgp()
	r.scale([]string{"ha"})
}
