package app

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestParseSpeakerGratuitousInterval(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    time.Duration
		wantErr string
	}{
		{name: "off by default", want: 0},
		{name: "set", args: []string{"--gratuitous-interval=30s"}, want: 30 * time.Second},
		{name: "negative", args: []string{"--gratuitous-interval=-1s"}, wantErr: "--gratuitous-interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--node-name=w"}, tt.args...)
			o, err := parseSpeaker(Invocation{Args: args, Getenv: env(nil), Stderr: &bytes.Buffer{}})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || ExitCode(err) != 2 {
					t.Fatalf("error %v, want a usage error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.GratuitousInterval != tt.want {
				t.Errorf("GratuitousInterval = %v, want %v", o.GratuitousInterval, tt.want)
			}
		})
	}
}
