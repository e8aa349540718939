package layer2_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/e2etest/lab"
)

// soakServices is how many dual-stack Services the soak announces.
const soakServices = 6

// BenchmarkNoFalseFailover keeps both cores of the machine busy with two
// busy loops (other processes, as other workloads on a node would be) for
// BARELB_SOAK (a Go duration, default 10m) while a 3-node lab announces a
// few Services, and reports every change of announcer (a ServiceL2Status's
// .status.node, watched) and every membership verdict in the speakers'
// logs ("Member gone": memberlist declared a member dead or it left;
// "Member down (kernel-level evidence)": the fast path marked it). Nothing
// fails or restarts during the soak, so every one of them is a false
// failover; the target is zero.
//
//	BARELB_SOAK=10m go test -run='^$' -bench=NoFalseFailover -benchtime=1x -timeout=30m ./e2etest/layer2/
func BenchmarkNoFalseFailover(b *testing.B) {
	d := 10 * time.Minute
	if s := os.Getenv("BARELB_SOAK"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			b.Fatalf("BARELB_SOAK: %v", err)
		}
	}
	l := startLab(b)
	var svcs []string
	for i := range soakServices {
		name := fmt.Sprintf("soak-%d", i)
		l.CreateLBService(b, name, name, corev1.ServiceExternalTrafficPolicyCluster)
		svcs = append(svcs, name)
	}
	for _, s := range svcs {
		l.WaitIngress(b, s, 2)
		waitAnnouncer(b, l, s, "")
	}
	time.Sleep(3 * time.Second) // let the first elections settle

	for range b.N {
		r := soak(b, l, svcs, d)
		r.log(b)
		b.ReportMetric(float64(len(r.changes)), "announcer-changes")
		b.ReportMetric(float64(len(r.gone)), "member-gone")
		b.ReportMetric(float64(len(r.down)), "fast-marks")
	}
	b.ReportMetric(0, "ns/op")
}

type soakResult struct {
	d             time.Duration
	changes       []string // announcer changes
	gone, down    []string // speakers' log lines
	load          string
	stallP50      time.Duration
	stallP99      time.Duration
	stallMax      time.Duration
	announcers    map[string]string
	watchRestarts int
}

// log prints the result to stdout (a benchmark's log is cut after a few
// lines) and to the benchmark's log.
func (r soakResult) log(tb testing.TB) {
	tb.Helper()
	lines := []string{
		fmt.Sprintf("soak of %v with 2 busy loops on %d CPUs (load average at the end: %s; a goroutine's 10 ms sleep woke late by p50 %v, p99 %v, max %v):",
			r.d, runtime.NumCPU(), r.load, r.stallP50.Round(time.Millisecond), r.stallP99.Round(time.Millisecond), r.stallMax.Round(time.Millisecond)),
		fmt.Sprintf("  %d announcer changes, %d \"Member gone\", %d \"Member down (kernel-level evidence)\" (watch re-established %d times)",
			len(r.changes), len(r.gone), len(r.down), r.watchRestarts),
	}
	for _, c := range r.changes {
		lines = append(lines, "  announcer change: "+c)
	}
	for _, g := range append(slices.Clone(r.gone), r.down...) {
		lines = append(lines, "  speaker log: "+g)
	}
	lines = append(lines, fmt.Sprintf("  announcers at the end: %v", r.announcers))
	for _, l := range lines {
		fmt.Println(l)
		tb.Log(l)
	}
}

func soak(tb testing.TB, l *lab.Lab, svcs []string, d time.Duration) soakResult {
	tb.Helper()
	r := soakResult{d: d, announcers: map[string]string{}}
	logs, err := filepath.Glob(filepath.Join(l.StateDir(), "logs", "*speaker*.log"))
	if err != nil || len(logs) == 0 {
		tb.Fatalf("no speaker logs in %s: %v", l.StateDir(), err)
	}
	offsets := map[string]int64{}
	for _, f := range logs {
		if st, err := os.Stat(f); err == nil {
			offsets[f] = st.Size()
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	start := time.Now()
	last := map[string]string{}
	for _, s := range svcs {
		n, err := l.L2Announcer("default", s)
		if err != nil || n == "" {
			tb.Fatalf("announcer of %s: %q %v", s, n, err)
		}
		last[s] = n
	}
	seen := func(svc, node, how string) {
		mu.Lock()
		defer mu.Unlock()
		if prev, ok := last[svc]; ok && prev != node {
			r.changes = append(r.changes, fmt.Sprintf("+%v %s: %s -> %s (%s)",
				time.Since(start).Round(time.Millisecond), svc, orAny(prev), orAny(node), how))
		}
		last[svc] = node
	}

	// Watch the ServiceL2Statuses; also list every second, in case the
	// watch is re-established in between.
	wc, err := client.NewWithWatch(l.RESTConfig(), client.Options{Scheme: l.Client().Scheme()})
	if err != nil {
		tb.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			w, err := wc.Watch(ctx, &barelbv1beta1.ServiceL2StatusList{}, client.InNamespace(lab.BarelbNamespace))
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			for ev := range w.ResultChan() {
				st, ok := ev.Object.(*barelbv1beta1.ServiceL2Status)
				if !ok {
					continue
				}
				svc := st.Labels[barelbv1beta1.LabelServiceName]
				switch ev.Type {
				case watch.Added, watch.Modified:
					seen(svc, st.Status.Node, "watch")
				case watch.Deleted:
					seen(svc, "", "watch: deleted")
				}
			}
			w.Stop()
			mu.Lock()
			r.watchRestarts++
			mu.Unlock()
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for _, s := range svcs {
				if n, err := l.L2Announcer("default", s); err == nil {
					seen(s, n, "list")
				}
			}
		}
	}()

	// Two busy loops: both cores of this machine.
	var burners []*exec.Cmd
	for range 2 {
		c := exec.Command("sh", "-c", "while :; do :; done")
		if err := c.Start(); err != nil {
			tb.Fatal(err)
		}
		burners = append(burners, c)
	}
	stopBurners := func() {
		for _, c := range burners {
			_ = c.Process.Signal(syscall.SIGKILL)
			_ = c.Wait()
		}
		burners = nil
	}
	tb.Cleanup(stopBurners)

	var stalls []time.Duration
	for ctx.Err() == nil {
		t0 := time.Now()
		time.Sleep(10 * time.Millisecond)
		stalls = append(stalls, time.Since(t0)-10*time.Millisecond)
	}
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		r.load = strings.TrimSpace(string(la))
	}
	stopBurners()
	wg.Wait()
	slices.Sort(stalls)
	if len(stalls) > 0 {
		r.stallP50, r.stallP99, r.stallMax = stalls[len(stalls)/2], stalls[len(stalls)*99/100], stalls[len(stalls)-1]
	}
	for _, s := range svcs {
		n, _ := l.L2Announcer("default", s)
		r.announcers[s] = n
	}

	for _, f := range logs {
		data, err := os.ReadFile(f)
		if err != nil {
			tb.Errorf("reading %s: %v", f, err)
			continue
		}
		data = data[min(int64(len(data)), offsets[f]):]
		for _, line := range bytes.Split(data, []byte("\n")) {
			s := filepath.Base(f) + ": " + string(line)
			switch {
			case bytes.Contains(line, []byte("Member gone")):
				r.gone = append(r.gone, s)
			case bytes.Contains(line, []byte("Member down (kernel-level evidence)")):
				r.down = append(r.down, s)
			}
		}
	}
	return r
}
