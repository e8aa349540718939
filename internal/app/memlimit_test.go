package app

import (
	"errors"
	"io/fs"
	"testing"
)

func TestSoftMemoryLimit(t *testing.T) {
	files := func(contents map[string]string) func(string) ([]byte, error) {
		return func(name string) ([]byte, error) {
			if c, ok := contents[name]; ok {
				return []byte(c), nil
			}
			return nil, fs.ErrNotExist
		}
	}
	const v2, v1 = "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"
	tests := []struct {
		name       string
		ratio      float64
		gomemlimit string
		files      map[string]string
		wantSoft   int64
		wantOK     bool
		wantErr    bool
	}{
		{name: "cgroup v2 limit", ratio: 0.75, files: map[string]string{v2: "268435456\n"}, wantSoft: 201326592, wantOK: true},
		{name: "cgroup v1 limit", ratio: 0.5, files: map[string]string{v1: "134217728\n"}, wantSoft: 67108864, wantOK: true},
		{name: "cgroup v2 without limit", ratio: 0.75, files: map[string]string{v2: "max\n", v1: "134217728"}},
		{name: "cgroup v1 without limit", ratio: 0.75, files: map[string]string{v1: "9223372036854771712\n"}},
		{name: "no cgroup", ratio: 0.75},
		{name: "GOMEMLIMIT set: the runtime applied it", ratio: 0.75, gomemlimit: "48MiB", files: map[string]string{v2: "268435456"}},
		{name: "ratio 0 is off", files: map[string]string{v2: "268435456"}},
		{name: "unreadable limit", ratio: 0.75, files: map[string]string{v2: "lots"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			soft, _, ok, err := softMemoryLimit(tc.ratio, tc.gomemlimit, files(tc.files))
			if (err != nil) != tc.wantErr || ok != tc.wantOK || soft != tc.wantSoft {
				t.Errorf("got %d, %v, %v; want %d, %v, error %v", soft, ok, err, tc.wantSoft, tc.wantOK, tc.wantErr)
			}
		})
	}
	if _, _, _, err := softMemoryLimit(0.75, "", func(string) ([]byte, error) { return nil, errors.New("denied") }); err == nil {
		t.Error("a read error is not reported")
	}
}

func TestHeapProfileRate(t *testing.T) {
	const runtimeDefault = 512 * 1024
	for _, tc := range []struct {
		name, pprof, godebug string
		want                 int
	}{
		{name: "no profile endpoint", want: 0},
		{name: "profiles served", pprof: "127.0.0.1:6060", want: runtimeDefault},
		{name: "profile endpoint off", pprof: "0", want: 0},
		{name: "GODEBUG chooses", godebug: "madvdontneed=1, memprofilerate=1", want: runtimeDefault},
		{name: "other GODEBUG settings", godebug: "madvdontneed=1", want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := heapProfileRate(tc.pprof, tc.godebug, runtimeDefault); got != tc.want {
				t.Errorf("heapProfileRate(%q, %q) = %d, want %d", tc.pprof, tc.godebug, got, tc.want)
			}
		})
	}
}
