package scale

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/e2etest/lab"
	"github.com/barelb/barelb/internal/testenv"
)

// speakerNode is the lab's only node.
const speakerNode = "node1"

// BenchmarkSpeaker measures one real speaker announcing every Service of a
// large cluster (10,000 by default, BARELB_SCALE_SERVICES), in a one-node
// lab (e2etest/lab) with the real controller, API server and
// endpointslice controller (an EndpointSlice per Service, as in a real
// cluster). It prints:
//   - announce-all-s: from the first Service created until the speaker has
//     written a ServiceL2Status naming its node for every one;
//   - speaker-RSS-MiB and speaker-HWM-MiB: VmRSS and VmHWM from /proc once
//     the speaker is idle with every Service announced (the target is
//     resident memory under 64 MiB), split into speaker-anon-MiB (RssAnon:
//     heap, stacks) and speaker-file-MiB (RssFile: the program's own
//     pages), and speaker-heap-MiB, the Go heap in use from its metrics;
//     the log adds the runtime's figures and the goroutines;
//   - settled-RSS-MiB, settled-anon-MiB, settled-file-MiB: the same 70 s
//     later, after a release of the program's pages (every minute);
//   - one-more-ms: the median time one more Service takes from its creation
//     until its ServiceL2Status names the node (controller allocation plus
//     one full plan recomputation by the speaker), and plan-ms, the speaker's
//     mean reconcile time while doing so;
//   - restart-s, restart-RSS-MiB, restart-HWM-MiB, restart-writes: a new
//     speaker process until it is ready and has reconciled once, its memory
//     then, and how many ServiceL2Status writes it made (nothing changed,
//     so 0 is right).
//
// kube-proxy is stopped once the lab is up: its iptables syncs of 10,000
// Services are not what is measured and would take the CPU the speaker
// needs. BARELB_SPEAKER_ENV sets environment variables of the speaker
// alone (BARELB_SPEAKER_ENV=GOMEMLIMIT=28MiB); BARELB_SPEAKER_ARGS adds
// flags to it. With BARELB_SPEAKER_PROFILES=DIR the speaker serves pprof
// and the benchmark saves its heap and goroutine profiles into DIR at
// steady state and after the restart (read them with go tool pprof), and
// logs the live heap after the profile's collection.
//
// Measured on the 2-core test machine, 10,000 Services (see the README):
// at first VmRSS 188 MiB, VmHWM 212 MiB, heap in use 125 MiB, plan 0.6 s,
// restart RSS 234 MiB (HWM 263 MiB). With the speaker's Services,
// EndpointSlices and ServiceL2Statuses in internal/k8s/servicecache, a
// leaner PlanL2, one scheduler goroutine per responder and a small event
// correlator cache: VmRSS 80 MiB (RssFile 39.5, RssAnon 42.3), VmHWM
// 82 MiB, heap in use 34 MiB of which 17.8 MiB live, 149 goroutines, plan
// 0.11 s; restart RSS 72.5 MiB (HWM 89 MiB). The floor is the program's
// own pages (RssFile, 35-39 MiB, there before any Service) plus the live
// heap (7 MiB with no Service, 16-18 MiB with 10,000) plus the runtime's
// few MiB: about 60 MiB with no room for garbage. GOMEMLIMIT=32MiB holds
// VmRSS at 61.7 MiB (HWM 64.7 MiB, RssFile 34.8 MiB in that run) with
// plans of 0.26 s; GOMEMLIMIT=28MiB at 62.8 MiB (HWM 66.9 MiB) with plans
// of 1.4 s, the collector running all the time. Then the speaker began
// releasing the pages of its program it does not use (internal/startuppages:
// 25-30 MiB of client-go's start-up code) every minute and collecting at
// GOGC 50, with a speaker scheme of the groups it reads: VmRSS 57.5-65.2
// MiB right after the 10,000 (RssAnon 33.4-35.6, RssFile 23.8-29.6: the
// code an active speaker runs), VmHWM 58-70 MiB, settled 37.5-54.5 MiB,
// plan 0.12 s, restart RSS 54.5 MiB, over 4 runs on an idle and on a
// loaded machine. GOGC 25 took 5 MiB more off RssAnon but doubled the
// plan (0.23 s). With a release 5 s after each burst of work and no heap
// profiling: 37.0-39.0 MiB 10 s after the last status was written
// (RssAnon 25.7-26.5, RssFile 11.3-12.5), 60.6-61.9 MiB at that moment.
//
// Since issue 14 the program's pages are released only with
// BARELB_SPEAKER_ARGS=--release-startup-pages; the targets count RssAnon
// (speaker-anon-MiB, settled-anon-MiB) and VmHWM (speaker-HWM-MiB).
//
// Run it once, as root: go test -run=^$ -bench=Speaker -benchtime=1x -timeout=60m ./e2etest/scale/
func BenchmarkSpeaker(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("the lab needs root (network namespaces)")
	}
	n := servicesWanted()
	ctx := context.Background()
	bin := labBinDir(b)
	speakerArgs := strings.Fields(os.Getenv("BARELB_SPEAKER_ARGS"))
	profiles := os.Getenv("BARELB_SPEAKER_PROFILES")
	if profiles != "" {
		speakerArgs = append(speakerArgs, "--pprof-bind-address="+speakerPprofAddress)
	}
	l := lab.Start(b, lab.Options{Nodes: 1, Barelb: true, BinDir: bin, SpeakerArgs: speakerArgs})
	if err := l.Stop(speakerNode, lab.ComponentKubeProxy); err != nil {
		b.Fatal(err)
	}
	c := l.Client()
	cs := unlimitedClientset(b, l.RESTConfig())
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNamespace}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	// The lab's pods use 198.18.N.0/24 and its ClusterIPs 198.19.0.0/16;
	// this quarter of the benchmarking range is free. The speaker answers
	// on the lab's LAN (eth0 of the node) only; no traffic is sent to it.
	pool := &barelbv1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: "scale", Namespace: barelbNamespace}}
	pool.Spec.Addresses = []barelbv1beta1.AddressRange{"198.18.64.0/18"}
	adv := &barelbv1beta1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "scale", Namespace: barelbNamespace}}
	adv.Spec.IPAddressPools = []string{"scale"}
	adv.Spec.Interfaces = []string{"eth0"}
	for _, obj := range []client.Object{pool, adv} {
		if err := c.Create(ctx, obj); err != nil {
			b.Fatal(err)
		}
	}
	sp := &speakerProcess{l: l}
	sw := watchStatuses(b, l)
	defer sw.stop()
	// The speaker's first release of its program's pages comes a second
	// after its caches are filled, which can be just after the lab is up.
	time.Sleep(3 * time.Second)
	base := sp.memory(b)
	b.Logf("speaker idle with no Service: VmRSS %.1f MiB, VmHWM %.1f MiB, Go heap in use %.1f MiB, %.0f goroutines (%s)", base.rss, base.hwm, base.heapInuse, base.goroutines, base.detail)

	b.ResetTimer()
	began := time.Now()
	parallel(b, n, func(i int) error {
		_, err := cs.CoreV1().Services(benchNamespace).Create(ctx, service(i), metav1.CreateOptions{})
		return err
	})
	created := time.Since(began)
	b.Logf("created %d Services in %v", n, created.Round(time.Millisecond))
	sw.waitAnnounced(b, n, 45*time.Minute, sp)
	announceAll := time.Since(began)
	b.Logf("the speaker announced all %d Services %v after the first was created", n, announceAll.Round(time.Millisecond))
	sp.waitIdle(b, 5*time.Minute)
	time.Sleep(5 * time.Second)
	steady := sp.memory(b)
	b.Logf("speaker with %d Services announced: VmRSS %.1f MiB, VmHWM %.1f MiB, Go heap in use %.1f MiB (allocated %.1f MiB), %.0f goroutines (%s)",
		n, steady.rss, steady.hwm, steady.heapInuse, steady.heapLive, steady.goroutines, steady.detail)
	sp.saveProfiles(b, profiles, "steady")
	// The speaker gives back the free heap the burst left once it has
	// been quiet for 5 s, and every minute
	// (--program-pages-release-interval); its program's pages too with
	// --release-startup-pages (BARELB_SPEAKER_ARGS), off by default.
	time.Sleep(speakerQuiet)
	quiet := sp.memory(b)
	idleAlloc := (quiet.allocated - steady.allocated) / speakerQuiet.Seconds()
	b.Logf("%v after the steady reading: VmRSS %.1f MiB (%s); the speaker allocated %.2f MiB/s in between", speakerQuiet, quiet.rss, quiet.detail, idleAlloc)
	sp.saveProfiles(b, profiles, "quiet")
	time.Sleep(speakerSettle - speakerQuiet)
	settled := sp.memory(b)
	b.Logf("%v after the steady reading: VmRSS %.1f MiB, VmHWM %.1f MiB, Go heap in use %.1f MiB (allocated %.1f MiB) (%s)",
		speakerSettle, settled.rss, settled.hwm, settled.heapInuse, settled.heapLive, settled.detail)

	// One more Service at this scale, a few times.
	var oneMore, assigned []time.Duration
	sum0, count0 := sp.reconcileTime(b)
	for k := 0; k < 5; k++ {
		i := n + k
		t0 := time.Now()
		if _, err := cs.CoreV1().Services(benchNamespace).Create(ctx, service(i), metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		assigned = append(assigned, waitAssigned(b, cs, i, t0))
		sw.waitService(b, fmt.Sprintf("svc-%05d", i), time.Minute)
		oneMore = append(oneMore, time.Since(t0))
		sp.waitIdle(b, time.Minute)
	}
	sum1, count1 := sp.reconcileTime(b)
	planMs := 0.0
	if count1 > count0 {
		planMs = 1000 * (sum1 - sum0) / (count1 - count0)
	}
	after := sp.memory(b)
	b.Logf("one more Service: announced after %v (median of %v), of which the controller took %v; speaker's mean plan (reconcile) %.0f ms over %.0f reconciles; VmRSS %.1f MiB",
		median(oneMore), oneMore, median(assigned), planMs, count1-count0, after.rss)

	// A new speaker process with every Service announced already.
	writesBefore := sw.writes()
	began = time.Now()
	if err := l.Restart(speakerNode, lab.ComponentSpeaker); err != nil {
		b.Fatal(err)
	}
	sp.pid = 0
	if err := l.WaitReady(ctx, speakerNode, lab.ComponentSpeaker); err != nil {
		b.Fatal(err)
	}
	sp.waitReconciled(b, 5*time.Minute)
	restart := time.Since(began)
	time.Sleep(5 * time.Second)
	restarted := sp.memory(b)
	restartWrites := sw.writes() - writesBefore
	b.StopTimer()
	if got := sw.announced(); got < n+5 {
		b.Errorf("after the restart only %d Services are announced by %s, want %d", got, speakerNode, n+5)
	}
	b.Logf("new speaker: ready and reconciled in %v, %d ServiceL2Status writes, VmRSS %.1f MiB, VmHWM %.1f MiB, Go heap in use %.1f MiB (allocated %.1f MiB), %.0f goroutines (%s)",
		restart.Round(time.Millisecond), restartWrites, restarted.rss, restarted.hwm, restarted.heapInuse, restarted.heapLive, restarted.goroutines, restarted.detail)
	sp.saveProfiles(b, profiles, "restart")

	b.ReportMetric(announceAll.Seconds(), "announce-all-s")
	b.ReportMetric(created.Seconds(), "create-all-s")
	b.ReportMetric(steady.rss, "speaker-RSS-MiB")
	b.ReportMetric(steady.hwm, "speaker-HWM-MiB")
	b.ReportMetric(steady.anon, "speaker-anon-MiB")
	b.ReportMetric(steady.file, "speaker-file-MiB")
	b.ReportMetric(steady.heapInuse, "speaker-heap-MiB")
	b.ReportMetric(quiet.rss, "quiet-RSS-MiB")
	b.ReportMetric(idleAlloc, "idle-alloc-MiB/s")
	b.ReportMetric(quiet.anon, "quiet-anon-MiB")
	b.ReportMetric(quiet.file, "quiet-file-MiB")
	b.ReportMetric(settled.rss, "settled-RSS-MiB")
	b.ReportMetric(settled.anon, "settled-anon-MiB")
	b.ReportMetric(settled.file, "settled-file-MiB")
	b.ReportMetric(float64(median(oneMore).Milliseconds()), "one-more-ms")
	b.ReportMetric(planMs, "plan-ms")
	b.ReportMetric(restart.Seconds(), "restart-s")
	b.ReportMetric(restarted.rss, "restart-RSS-MiB")
	b.ReportMetric(restarted.hwm, "restart-HWM-MiB")
	b.ReportMetric(float64(restartWrites), "restart-writes")
}

// labBinDir builds the controller and speaker of this tree into a
// temporary folder next to links to the control-plane tools of bin/, so
// that the lab runs exactly the code under test. With
// BARELB_BENCH_PROGRAMS set, it links the controller and speaker built in
// that folder instead (to measure another version, say).
func labBinDir(b *testing.B) string {
	root, err := testenv.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	tools := []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-proxy"}
	if prebuilt := os.Getenv("BARELB_BENCH_PROGRAMS"); prebuilt != "" {
		for _, p := range []string{"controller", "speaker"} {
			if err := os.Symlink(filepath.Join(prebuilt, p), filepath.Join(dir, p)); err != nil {
				b.Fatal(err)
			}
		}
	} else if err := testenv.BuildPrograms(context.Background(), dir, "./controller", "./speaker"); err != nil {
		b.Fatal(err)
	}
	if env := os.Getenv("BARELB_SPEAKER_ENV"); env != "" {
		// Only the speaker gets these (GOMEMLIMIT=…, say); the lab's other
		// programs are Go programs too. exec keeps the speaker's PID.
		realPath := filepath.Join(dir, "speaker.real")
		if err := os.Rename(filepath.Join(dir, "speaker"), realPath); err != nil {
			b.Fatal(err)
		}
		script := fmt.Sprintf("#!/bin/sh\nexec env %s %s \"$@\"\n", env, realPath)
		if err := os.WriteFile(filepath.Join(dir, "speaker"), []byte(script), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	for _, tool := range tools {
		if err := os.Symlink(filepath.Join(root, "bin", tool), filepath.Join(dir, tool)); err != nil {
			b.Fatal(err)
		}
	}
	return dir
}

// waitAssigned polls Service i until the controller has given it an
// address and returns the time since since.
func waitAssigned(b *testing.B, cs *kubernetes.Clientset, i int, since time.Time) time.Duration {
	deadline := since.Add(time.Minute)
	for time.Now().Before(deadline) {
		svc, err := cs.CoreV1().Services(benchNamespace).Get(context.Background(), fmt.Sprintf("svc-%05d", i), metav1.GetOptions{})
		if err == nil && len(svc.Status.LoadBalancer.Ingress) > 0 {
			return time.Since(since)
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.Fatalf("Service %d got no address within a minute", i)
	return 0
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2].Round(time.Millisecond)
}

// statusWatch follows the ServiceL2Status objects of the lab.
type statusWatch struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	node    map[string]string // Service name → node named
	nwrites int
	changed chan struct{}
}

func watchStatuses(b *testing.B, l *lab.Lab) *statusWatch {
	wc, err := client.NewWithWatch(l.RESTConfig(), client.Options{Scheme: l.Client().Scheme()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sw := &statusWatch{cancel: cancel, done: make(chan struct{}), node: map[string]string{}, changed: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		defer close(sw.done)
		first := true
		for ctx.Err() == nil {
			var list barelbv1beta1.ServiceL2StatusList
			if err := wc.List(ctx, &list, client.InNamespace(barelbNamespace)); err != nil {
				time.Sleep(time.Second)
				continue
			}
			sw.mu.Lock()
			sw.node = map[string]string{}
			for _, s := range list.Items {
				sw.node[s.Status.ServiceName] = s.Status.Node
			}
			sw.notify()
			sw.mu.Unlock()
			w, err := wc.Watch(ctx, &barelbv1beta1.ServiceL2StatusList{}, client.InNamespace(barelbNamespace),
				&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
			if err != nil {
				time.Sleep(time.Second)
				continue
			}
			if first {
				close(ready)
				first = false
			}
			for ev := range w.ResultChan() {
				s, ok := ev.Object.(*barelbv1beta1.ServiceL2Status)
				if !ok {
					continue
				}
				sw.mu.Lock()
				switch ev.Type {
				case watch.Added, watch.Modified:
					sw.nwrites++
					sw.node[s.Status.ServiceName] = s.Status.Node
				case watch.Deleted:
					sw.nwrites++
					delete(sw.node, s.Status.ServiceName)
				}
				sw.notify()
				sw.mu.Unlock()
			}
			w.Stop()
		}
	}()
	select {
	case <-ready:
	case <-time.After(time.Minute):
		b.Fatal("could not watch ServiceL2Status objects")
	}
	return sw
}

// notify wakes the waiters; sw.mu is held.
func (sw *statusWatch) notify() {
	close(sw.changed)
	sw.changed = make(chan struct{})
}

func (sw *statusWatch) stop() {
	sw.cancel()
	<-sw.done
}

func (sw *statusWatch) announced() int {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	count := 0
	for _, node := range sw.node {
		if node == speakerNode {
			count++
		}
	}
	return count
}

func (sw *statusWatch) writes() int {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.nwrites
}

// wait waits until ok holds (checked under sw.mu) or limit passes.
func (sw *statusWatch) wait(limit time.Duration, ok func() bool) bool {
	deadline := time.After(limit)
	for {
		sw.mu.Lock()
		done, changed := ok(), sw.changed
		sw.mu.Unlock()
		if done {
			return true
		}
		select {
		case <-changed:
		case <-deadline:
			return false
		}
	}
}

func (sw *statusWatch) waitAnnounced(b *testing.B, n int, limit time.Duration, sp *speakerProcess) {
	progress := time.NewTicker(30 * time.Second)
	defer progress.Stop()
	go func() {
		for range progress.C {
			m := sp.memoryOrZero()
			b.Logf("… %d Services announced; speaker VmRSS %.1f MiB, VmHWM %.1f MiB", sw.announced(), m.rss, m.hwm)
		}
	}()
	if !sw.wait(limit, func() bool {
		count := 0
		for _, node := range sw.node {
			if node == speakerNode {
				count++
			}
		}
		return count >= n
	}) {
		b.Fatalf("only %d of %d Services announced within %v", sw.announced(), n, limit)
	}
}

func (sw *statusWatch) waitService(b *testing.B, name string, limit time.Duration) {
	if !sw.wait(limit, func() bool { return sw.node[name] == speakerNode }) {
		b.Fatalf("Service %s not announced by %s within %v", name, speakerNode, limit)
	}
}

// speakerProcess is the lab's speaker, seen from /proc and its metrics.
type speakerProcess struct {
	l   *lab.Lab
	pid int
}

// memoryUse is what memory reads.
type memoryUse struct {
	// rss is VmRSS, the sum of anon (RssAnon: heap, stacks, written data)
	// and file (RssFile: mapped pages of the program).
	rss, anon, file, hwm, heapInuse, heapLive, goroutines float64
	// allocated is the Go heap's cumulative allocation, in MiB.
	allocated float64
	// detail breaks VmRSS down, for the log.
	detail string
}

// speakerSettle is how long the benchmark leaves the speaker alone before
// its "settled" memory reading: one release of its program's pages (every
// minute) and some.
const speakerSettle = 70 * time.Second

// speakerQuiet is how long after its "steady" reading the benchmark reads
// the speaker's memory again: past the release that follows a burst of
// work (5 s of quiet) and before the periodic one.
const speakerQuiet = 10 * time.Second

func (p *speakerProcess) memory(b *testing.B) memoryUse {
	m, err := p.readMemory()
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func (p *speakerProcess) memoryOrZero() memoryUse {
	m, _ := p.readMemory()
	return m
}

func (p *speakerProcess) readMemory() (memoryUse, error) {
	var m memoryUse
	if err := p.findPID(); err != nil {
		return m, err
	}
	resident, err := lab.ProcessMemory(p.pid)
	if err != nil {
		return m, err
	}
	m.rss, m.anon, m.file, m.hwm = resident.RSS, resident.Anon, resident.File, resident.HWM
	m.detail += fmt.Sprintf("RssAnon %.1f MiB RssFile %.1f MiB ", m.anon, m.file)
	metrics, err := p.scrape()
	if err == nil {
		m.heapInuse = metrics["go_memstats_heap_inuse_bytes"] / (1 << 20)
		m.heapLive = metrics["go_memstats_heap_alloc_bytes"] / (1 << 20)
		m.goroutines = metrics["go_goroutines"]
		m.allocated = metrics["go_memstats_alloc_bytes_total"] / (1 << 20)
		for _, name := range []string{"heap_idle", "heap_released", "stack_inuse", "next_gc", "buck_hash_sys", "gc_sys", "other_sys", "sys"} {
			m.detail += fmt.Sprintf("%s %.1f MiB ", name, metrics["go_memstats_"+name+"_bytes"]/(1<<20))
		}
	}
	return m, nil
}

// findPID finds the speaker's process, again once it has been restarted.
func (p *speakerProcess) findPID() error {
	if p.pid != 0 {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", p.pid)); err == nil {
			return nil
		}
	}
	pid, err := p.l.SpeakerPID(speakerNode)
	p.pid = pid
	return err
}

// scrape reads the speaker's metrics: every series, and the sum of the
// series of each name (of the layer-2 announcer alone where a series names
// its controller).
func (p *speakerProcess) scrape() (map[string]float64, error) {
	series, err := p.l.SpeakerMetrics(speakerNode)
	if err != nil {
		return nil, err
	}
	out := make(map[string]float64, len(series))
	for name, v := range series {
		if j := strings.IndexByte(name, '{'); j >= 0 {
			out[name] += v // the series itself, labels and all
			if !strings.Contains(name, `controller="layer2-announcer"`) && !strings.Contains(name, `name="layer2-announcer"`) {
				continue
			}
			name = name[:j]
		}
		out[name] += v
	}
	return out, nil
}

// speakerPprofAddress is where the speaker serves its profiles when
// BARELB_SPEAKER_PROFILES is set.
const speakerPprofAddress = "127.0.0.1:7476"

// saveProfiles writes the speaker's heap (after a GC) and goroutine
// profiles into dir as NAME-heap.pb.gz and NAME-goroutine.txt, when dir is
// set (BARELB_SPEAKER_PROFILES); read them with go tool pprof.
func (p *speakerProcess) saveProfiles(b *testing.B, dir, name string) {
	if dir == "" {
		return
	}
	hc := p.l.HTTPClient(speakerNode, 30*time.Second)
	for file, path := range map[string]string{name + "-heap.pb.gz": "/debug/pprof/heap?gc=1", name + "-goroutine.txt": "/debug/pprof/goroutine?debug=1"} {
		resp, err := hc.Get("http://" + speakerPprofAddress + path)
		if err != nil {
			b.Fatal(err)
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	// The heap profile ran a garbage collection: what is allocated now is
	// about what is live.
	live := 0.0
	if m, err := p.scrape(); err == nil {
		live = m["go_memstats_heap_alloc_bytes"] / (1 << 20)
	}
	b.Logf("speaker profiles written to %s/%s-*; live heap after a forced collection about %.1f MiB", dir, name, live)
}

// reconcileTime is the sum and count of the announcer's reconcile times.
func (p *speakerProcess) reconcileTime(b *testing.B) (sum, count float64) {
	m, err := p.scrape()
	if err != nil {
		b.Fatal(err)
	}
	return m["controller_runtime_reconcile_time_seconds_sum"], m["controller_runtime_reconcile_time_seconds_count"]
}

// waitIdle waits until the announcer has nothing queued and no reconcile
// running for a second. The lab's node heartbeat (every 10 s) makes the
// speaker recompute the plan now and then, so idle never lasts long.
func (p *speakerProcess) waitIdle(b *testing.B, limit time.Duration) {
	deadline := time.Now().Add(limit)
	quiet := 0
	for time.Now().Before(deadline) {
		m, err := p.scrape()
		if err == nil && m["workqueue_depth"] == 0 && m["controller_runtime_active_workers"] == 0 {
			quiet++
		} else {
			quiet = 0
		}
		if quiet >= 5 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.Logf("WARNING: the speaker was still busy after %v", limit)
}

// waitReconciled waits until a new speaker has reconciled at least once
// successfully and has nothing queued.
func (p *speakerProcess) waitReconciled(b *testing.B, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if m, err := p.scrape(); err == nil && m[`controller_runtime_reconcile_total{controller="layer2-announcer",result="success"}`] >= 1 && m["workqueue_depth"] == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("the new speaker did not reconcile within %v", limit)
}
