package startuppages

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestReleasableRegions(t *testing.T) {
	const (
		exe    = "/usr/local/bin/speaker"
		pieExe = "/usr/bin/speaker"
	)
	tests := []struct {
		name    string
		file    string
		exe     string
		want    []Region
		wantErr string
	}{
		{
			// A real map of the (statically linked) speaker: text,
			// read-only data, then the writable data and bss, which must
			// be left alone.
			name: "speaker",
			file: "speaker.smaps",
			exe:  exe,
			want: []Region{{Start: 0x400000, End: 0x1d1a000}, {Start: 0x1d1a000, End: 0x3b8a000}},
		},
		{
			name: "binary replaced while running",
			file: "deleted.smaps",
			exe:  exe,
			want: []Region{{Start: 0x400000, End: 0x1d1a000}},
		},
		{
			// A PIE: the third mapping is read-only in maps but the
			// loader relocated it (RELRO), so it holds anonymous pages
			// and is kept.
			name: "PIE keeps its relocated RELRO segment",
			file: "pie.smaps",
			exe:  pieExe,
			want: []Region{{Start: 0x5635a505a000, End: 0x5635a5105000}, {Start: 0x5635a5105000, End: 0x5635a51e9000}},
		},
		{
			// Externally linked: RELRO pages swapped out still count.
			name: "swapped relocated pages",
			file: "swapped.smaps",
			exe:  pieExe,
			want: []Region{{Start: 0x55d0e0000000, End: 0x55d0e002d000}, {Start: 0x55d0e002d000, End: 0x55d0e00d9000},
				{Start: 0x55d0e00d9000, End: 0x55d0e0193000}},
		},
		{name: "counters missing: nothing released", file: "nocounters.smaps", exe: exe},
		{name: "another executable", file: "speaker.smaps", exe: "/bin/other"},
		{name: "garbled address", file: "garbled.smaps", exe: exe, wantErr: `start address "zz400000"`},
		{name: "short line", file: "short.smaps", exe: exe, wantErr: "want at least 5 fields"},
		{name: "counter not in kB", file: "badcounter.smaps", exe: exe, wantErr: `unit "MB"`},
		{name: "counter before any mapping", file: "orphan.smaps", exe: exe, wantErr: "before any mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := ReleasableRegions(f, tt.exe)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("regions (-want +got):\n%s", d)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name    string
		status  string
		want    Resident
		wantErr bool
	}{
		{
			name:   "linux 6",
			status: "Name:\tspeaker\nVmHWM:\t   97276 kB\nVmRSS:\t   87120 kB\nRssAnon:\t   45000 kB\nRssFile:\t   42120 kB\nRssShmem:\t       0 kB\n",
			want:   Resident{Total: 87120 << 10, Anonymous: 45000 << 10, File: 42120 << 10},
		},
		{name: "missing field", status: "VmRSS:\t 1 kB\nRssAnon:\t 1 kB\n", wantErr: true},
		{name: "not kB", status: "VmRSS:\t 1 MB\nRssAnon:\t 1 kB\nRssFile:\t 1 kB\n", wantErr: true},
		{name: "not a number", status: "VmRSS:\t x kB\nRssAnon:\t 1 kB\nRssFile:\t 1 kB\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStatus(tt.status)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
