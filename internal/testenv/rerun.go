package testenv

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RerunInNetns runs the test named inner of this test binary again, whole,
// inside the network namespace netns, with spec (as JSON) in the
// environment variable env; it fails unless inner ran and passed. A
// program whose goroutines may run on any thread (GoBGP dials from its
// own) cannot live in a namespace that only one thread entered: the whole
// process must start in it. The inner test reads its spec with ReadRerunSpec.
func RerunInNetns(t testing.TB, netns, inner, env string, spec any) {
	t.Helper()
	raw, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", netns, os.Args[0], "-test.run", "^"+inner+"$", "-test.v", "-test.count=1", "-test.timeout=10m")
	cmd.Env = append(os.Environ(), env+"="+string(raw))
	out, err := cmd.CombinedOutput()
	t.Logf("inside namespace %s:\n%s", netns, out)
	if err != nil {
		t.Fatalf("%s failed: %v", inner, err)
	}
	if !strings.Contains(string(out), "--- PASS: "+inner) {
		t.Fatalf("%s did not run", inner)
	}
}

// ReadRerunSpec decodes, in the test RerunInNetns started, the spec from
// env into spec. It says false (and the test should skip) when env is
// unset: the test was not started by RerunInNetns.
func ReadRerunSpec(t testing.TB, env string, spec any) bool {
	t.Helper()
	raw := os.Getenv(env)
	if raw == "" {
		return false
	}
	if err := json.Unmarshal([]byte(raw), spec); err != nil {
		t.Fatalf("%s: %v", env, err)
	}
	return true
}
