package cluster_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/barelb/barelb/e2etest/lab"
)

// TestDemos runs `make demo`'s and `make demo-cluster`'s program as the
// README tells users to, so that neither rots: each must end well and say
// that another node took over.
func TestDemos(t *testing.T) {
	lab.NeedsLab(t, "the demos")
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"make demo", nil},
		{"make demo-cluster", []string{"--cluster"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			start := time.Now()
			cmd := exec.CommandContext(ctx, "go", append([]string{"run", "../cmd/demo"}, tc.args...)...)
			cmd.Env = append(cmd.Environ(), "KEEP=")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", tc.name, err, out)
			}
			text := string(out)
			for _, want := range []string{"took over", "done: no namespace"} {
				if !strings.Contains(text, want) {
					t.Errorf("%s said nothing of %q:\n%s", tc.name, want, text)
				}
			}
			for _, line := range strings.Split(text, "\n") {
				if strings.Contains(line, "took over") || strings.Contains(line, "request loop:") {
					t.Logf("%s: %s", tc.name, strings.TrimSpace(line))
				}
			}
			t.Logf("%s ran in %v", tc.name, time.Since(start).Round(time.Second))
		})
	}
}
