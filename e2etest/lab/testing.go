package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
)

// NeedsLab skips an end-to-end test with -short (unit tests only) and
// fails it without root: `make test` runs the lab as root, as CI does.
// suite names the test's suite in the skip message.
func NeedsLab(tb testing.TB, suite string) {
	tb.Helper()
	if testing.Short() {
		tb.Skip(suite + " is an end-to-end test; -short runs unit tests only")
	}
	if os.Geteuid() != 0 {
		tb.Fatal("the lab makes network namespaces and must run as root (CI does)")
	}
}

// Start brings a lab up for a test and tears it down when the test ends,
// also when the test binary is interrupted. It skips the test when not
// root. The test binary's TestMain must call [RunHelperMode].
func Start(t testing.TB, opts Options) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the lab needs root (network namespaces)")
	}
	if opts.Log.GetSink() == nil {
		opts.Log = TestLogger(t)
	}
	start := time.Now()
	timeout := 2 * time.Minute
	if opts.Kubelets {
		// containerd, image imports and kubelets take longer.
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// A failed Up is kept just long enough to save its logs.
	keep := opts.KeepOnFailure
	opts.KeepOnFailure = true
	if opts.Prefix == "" {
		b := make([]byte, 2)
		_, _ = rand.Read(b)
		opts.Prefix = "blb" + hex.EncodeToString(b)
	}
	l, err := Up(ctx, opts)
	if err != nil {
		root := opts.StateRoot
		if root == "" {
			root = DefaultStateRoot
		}
		kept := filepath.Join(os.TempDir(), "barelb-failed-"+opts.Prefix)
		if out, cerr := exec.Command("cp", "-r", filepath.Join(root, opts.Prefix, "logs"), kept).CombinedOutput(); cerr == nil {
			t.Logf("the failed lab's logs are kept in %s", kept)
		} else {
			t.Logf("keeping the failed lab's logs: %v %s", cerr, out)
		}
		if !keep {
			if cerr := Cleanup(opts.Prefix, root); cerr != nil {
				t.Logf("cleaning up the failed lab: %v", cerr)
			}
		}
		t.Fatalf("bringing the lab up: %v", err)
	}
	t.Logf("lab %s up in %v (state in %s)", l.Prefix(), time.Since(start).Round(time.Millisecond), l.StateDir())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	stop := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			l.Down()
			os.Exit(1)
		case <-stop:
		}
	}()
	t.Cleanup(func() {
		signal.Stop(sigs)
		close(stop)
		if t.Failed() || os.Getenv("BARELB_KEEP_LOGS") != "" {
			// The state folder goes with the lab; its processes' logs
			// are what explains a failure (BARELB_KEEP_LOGS=1 keeps
			// them after a success too).
			kept := filepath.Join(os.TempDir(), "barelb-failed-"+l.Prefix())
			if out, err := exec.Command("cp", "-r", filepath.Join(l.StateDir(), "logs"), kept).CombinedOutput(); err != nil {
				t.Logf("keeping the lab's logs: %v %s", err, out)
			} else {
				// Real nodes: the containers' logs too.
				for _, n := range l.Nodes() {
					_ = exec.Command("cp", "-r", filepath.Join(l.nodeDir(n.Name), "pods-logs"), filepath.Join(kept, n.Name+"-pods")).Run()
				}
				t.Logf("the lab's logs are kept in %s", kept)
			}
		}
		start := time.Now()
		l.Down()
		t.Logf("lab %s down in %v", l.Prefix(), time.Since(start).Round(time.Millisecond))
	})
	return l
}

// TestLogger logs to the test's log.
func TestLogger(t testing.TB) logr.Logger {
	return funcr.New(func(prefix, args string) {
		t.Helper()
		t.Log(prefix, args)
	}, funcr.Options{Verbosity: 1})
}
