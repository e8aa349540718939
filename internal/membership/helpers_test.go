package membership

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/barelb/barelb/internal/testenv"
)

const loopback = "127.0.0.1"

// freePort returns a port free for both TCP and UDP on 127.0.0.1.
func freePort(t testing.TB) int { return testenv.FreeLoopbackPort(t) }

func addr(port int) string { return net.JoinHostPort(loopback, strconv.Itoa(port)) }

// testLogger discards, or writes everything to stderr with
// BARELB_TEST_LOG=1 (not t.Log: memberlist may log after a test ends).
func testLogger(name string) logr.Logger {
	if os.Getenv("BARELB_TEST_LOG") == "" {
		return logr.Discard()
	}
	return funcr.New(func(prefix, args string) {
		fmt.Fprintf(os.Stderr, "%s %s %s %s\n", time.Now().Format("15:04:05.000"), name, prefix, args)
	}, funcr.Options{Verbosity: 2}).WithValues("test", name)
}

// testTiming is LANTiming, or with BARELB_TEST_TIMING="200ms,100ms,2"
// (ProbeInterval, ProbeTimeout, SuspicionMult) another timing to compare;
// child processes inherit it.
func testTiming(t testing.TB) Timing {
	tm := LANTiming()
	s := os.Getenv("BARELB_TEST_TIMING")
	if s == "" {
		return tm
	}
	f := strings.Split(s, ",")
	var err error
	if len(f) != 3 {
		t.Fatalf("BARELB_TEST_TIMING %q: want interval,timeout,mult", s)
	}
	if tm.ProbeInterval, err = time.ParseDuration(f[0]); err != nil {
		t.Fatal(err)
	}
	if tm.ProbeTimeout, err = time.ParseDuration(f[1]); err != nil {
		t.Fatal(err)
	}
	if tm.SuspicionMult, err = strconv.Atoi(f[2]); err != nil {
		t.Fatal(err)
	}
	return tm
}

// member starts an in-process member on a free loopback port; it is shut
// down when the test ends.
type memberOpts struct {
	key    []byte
	extra  [][]byte // Config.ExtraSecretKeys
	bind   string   // default 127.0.0.1
	port   int
	logger *logr.Logger
	meta   []byte
	// leftGrace is Config.LeftGrace.
	leftGrace time.Duration
	// state is Config.JoinState.
	state JoinState
	// pushPull, when set, is Timing.PushPullInterval.
	pushPull time.Duration
	// noEcho is Config.NoEchoChecks.
	noEcho bool
}

func startMember(t testing.TB, name string, o memberOpts) (*Membership, int) {
	t.Helper()
	if o.bind == "" {
		o.bind = loopback
	}
	if o.port == 0 {
		o.port = freePort(t)
	}
	lg := testLogger(name)
	if o.logger != nil {
		lg = *o.logger
	}
	timing := testTiming(t)
	if o.pushPull > 0 {
		timing.PushPullInterval = o.pushPull
	}
	m, err := New(Config{NodeName: name, BindAddr: o.bind, BindPort: o.port, SecretKey: o.key, ExtraSecretKeys: o.extra, Timing: timing, Logger: lg, Meta: o.meta, LeftGrace: o.leftGrace, JoinState: o.state, NoEchoChecks: o.noEcho})
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return m, o.port
}

func join(t testing.TB, m *Membership, ports ...int) {
	t.Helper()
	var peers []string
	for _, p := range ports {
		peers = append(peers, addr(p))
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if _, err := m.Join(ctx, peers); err != nil {
		t.Fatalf("Join: %v", err)
	}
}

// elapsedUntil measures how long cond takes to hold, polling every
// millisecond (testutil.Eventually's coarser polling would blur a
// detection time), and fails the test after timeout.
func elapsedUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		took := time.Since(start)
		if cond() {
			return took
		}
		if took > timeout {
			t.Fatalf("after %v still waiting for %s", took, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// sees is a testutil.Eventually condition: every member of ms lists
// exactly want.
func sees(ms []*Membership, want ...string) func() (bool, string) {
	slices.Sort(want)
	return func() (bool, string) {
		for i, m := range ms {
			if got := m.Members(); !slices.Equal(got, want) {
				return false, fmt.Sprintf("member %d lists %v", i, got)
			}
		}
		return true, ""
	}
}

// healthy is a testutil.Eventually condition: every member of ms lists
// exactly want and has a health score of 0 (no unexplained failed probes
// slowing its probing down).
func healthy(ms []*Membership, want ...string) func() (bool, string) {
	seen := sees(ms, want...)
	return func() (bool, string) {
		if ok, last := seen(); !ok {
			return false, last
		}
		for i, m := range ms {
			if h := m.list.GetHealthScore(); h > 0 {
				return false, fmt.Sprintf("member %d has health score %d", i, h)
			}
		}
		return true, ""
	}
}

func lists(m *Membership, name string) bool { return slices.Contains(m.Members(), name) }

// memberlistLists tells whether memberlist itself lists name (alive or
// suspect), whatever the fast path says.
func memberlistLists(m *Membership, name string) bool {
	for _, n := range m.list.Members() {
		if n.Name == name {
			return true
		}
	}
	return false
}

// drain empties a Changes channel.
func drain(c <-chan struct{}) {
	select {
	case <-c:
	default:
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// Child process members: the test binary re-executed with helperEnv set
// runs one member in TestHelperProcess until killed (or its stdin closes,
// so it never outlives the test).
const helperEnv = "BARELB_MEMBERSHIP_HELPER"

type child struct {
	name  string
	port  int
	cmd   *exec.Cmd
	stdin io.WriteCloser // held open: the child exits when it closes
	once  sync.Once
}

func startChild(t testing.TB, name string, port int, seed int) *child {
	t.Helper()
	return startChildAt(t, childOpts{name: name, port: port, seed: addr(seed)})
}

// childOpts places a child member: bind address (default 127.0.0.1),
// seed "ip:port", and the network namespace to run it in (default this
// process's).
type childOpts struct {
	name, bind, seed, netns string
	port                    int
}

func startChildAt(t testing.TB, o childOpts) *child {
	t.Helper()
	name, port := o.name, o.port
	if o.bind == "" {
		o.bind = loopback
	}
	args := []string{os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1"}
	if o.netns != "" {
		args = append([]string{"ip", "netns", "exec", o.netns}, args...) // ip execs the binary: same PID
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(),
		helperEnv+"=1",
		"HELPER_NAME="+name,
		"HELPER_BIND="+o.bind,
		"HELPER_PORT="+strconv.Itoa(port),
		"HELPER_SEED="+o.seed,
	)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	ready := &readyWriter{ch: make(chan struct{})}
	cmd.Stdout = ready
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{name: name, port: port, cmd: cmd, stdin: stdin}
	t.Cleanup(c.kill)
	select {
	case <-ready.ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("child %s not ready after 30s", name)
	}
	return c
}

// readyWriter closes ch once "READY" has been written.
type readyWriter struct {
	mu   sync.Mutex
	buf  strings.Builder
	ch   chan struct{}
	done bool
}

func (w *readyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.buf.Write(p)
		if strings.Contains(w.buf.String(), "READY\n") {
			w.done = true
			close(w.ch)
		}
	}
	return len(p), nil
}

// kill SIGKILLs the child and reaps it.
func (c *child) kill() {
	c.once.Do(func() {
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
		_ = c.cmd.Wait()
	})
}

// spin burns CPU for a moment.
func spin() {
	x := 0
	for i := range 1 << 20 {
		x += i
	}
	sink.Add(int64(x))
}

var sink atomic.Int64

// startBurner runs a child process that spins on one thread until killed.
func startBurner(t testing.TB) *child {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=burn", "GOMAXPROCS=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{name: "burner", cmd: cmd, stdin: stdin}
	t.Cleanup(c.kill)
	return c
}

func TestHelperProcess(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "1":
	case "burn":
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			os.Exit(0)
		}()
		for {
			spin()
		}
	default:
		return
	}
	port, _ := strconv.Atoi(os.Getenv("HELPER_PORT"))
	name := os.Getenv("HELPER_NAME")
	m, err := New(Config{NodeName: name, BindAddr: os.Getenv("HELPER_BIND"), BindPort: port, Timing: testTiming(t), Logger: testLogger(name)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if _, err := m.Join(context.Background(), []string{os.Getenv("HELPER_SEED")}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for len(m.Members()) < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Println("READY")
	// Live until killed, or until the parent goes away.
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}
