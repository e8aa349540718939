package scale

import (
	"os"
	"testing"

	"github.com/barelb/barelb/e2etest/lab"
)

// TestMain lets the test binary serve as the lab's helper program, which
// BenchmarkSpeaker's lab needs.
func TestMain(m *testing.M) {
	lab.RunHelperMode()
	os.Exit(m.Run())
}
