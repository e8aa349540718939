package app

import (
	"crypto/sha256"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMemberlistSecrets(t *testing.T) {
	hash := func(s string) []byte { sum := sha256.Sum256([]byte(s)); return sum[:] }
	for _, tt := range []struct {
		name           string
		primary, extra string
		wantKey        []byte
		wantExtra      [][]byte
	}{
		{"none", "", "", nil, nil},
		{"the secret alone", "old", "", hash("old"), nil},
		{"one extra, as a hand-edited Secret has it", "old", "new\n", hash("old"), [][]byte{hash("new")}},
		{"several, blank lines and spaces", "new", "\n  old \r\n\nolder\n", hash("new"), [][]byte{hash("old"), hash("older")}},
		{"the secret itself and repeats are dropped", "new", "new\nold\nold", hash("new"), [][]byte{hash("old")}},
		{"extra without a secret: no keys (refused at start)", "", "old", nil, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			key, extra := memberlistSecretsFrom(tt.primary, tt.extra).keys()
			if diff := cmp.Diff(tt.wantKey, key); diff != "" {
				t.Errorf("key (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantExtra, extra); diff != "" {
				t.Errorf("extra keys (-want +got):\n%s", diff)
			}
		})
	}
}
