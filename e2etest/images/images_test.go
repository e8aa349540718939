package images_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/barelb/barelb/internal/testenv"
)

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	Platform  *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
	} `json:"platform"`
}

type manifest struct {
	MediaType string       `json:"mediaType"`
	Config    descriptor   `json:"config"`
	Layers    []descriptor `json:"layers"`
	Manifests []descriptor `json:"manifests"`
}

type imageConfig struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Config       struct {
		Entrypoint []string          `json:"Entrypoint"`
		User       string            `json:"User"`
		Labels     map[string]string `json:"Labels"`
	} `json:"config"`
}

// ociArchive is an OCI image layout read from a tarball.
type ociArchive map[string][]byte

func readArchive(t *testing.T, path string) ociArchive {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("%v (run `make images`)", err)
	}
	defer f.Close()
	files := ociArchive{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading %s: %v", path, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("reading %s: %v", h.Name, err)
		}
		files[h.Name] = data
	}
	return files
}

// blob returns the blob of d after checking its size and digest.
func (a ociArchive) blob(t *testing.T, d descriptor) []byte {
	t.Helper()
	algo, hexDigest, ok := strings.Cut(d.Digest, ":")
	if !ok || algo != "sha256" {
		t.Fatalf("digest %q is not sha256", d.Digest)
	}
	data, ok := a["blobs/sha256/"+hexDigest]
	if !ok {
		t.Fatalf("blob %s is missing", d.Digest)
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != hexDigest || int64(len(data)) != d.Size {
		t.Fatalf("blob %s does not match its descriptor (size %d, want %d)", d.Digest, len(data), d.Size)
	}
	return data
}

func decode(t *testing.T, data []byte, into any) {
	t.Helper()
	if err := json.Unmarshal(data, into); err != nil {
		t.Fatalf("decoding JSON: %v", err)
	}
}

// filesOf unpacks a gzipped tar layer.
func filesOf(t *testing.T, layer []byte) map[string]*tar.Header {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(layer))
	if err != nil {
		t.Fatalf("layer is not gzip: %v", err)
	}
	files := map[string]*tar.Header{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("reading layer: %v", err)
		}
		files[strings.TrimSuffix(h.Name, "/")] = h
	}
}

func extract(t *testing.T, layer []byte, name, dest string) bool {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(layer))
	if err != nil {
		t.Fatalf("layer is not gzip: %v", err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return false
		}
		if err != nil {
			t.Fatalf("reading layer: %v", err)
		}
		if h.Name != name {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dest, data, 0o755); err != nil {
			t.Fatal(err)
		}
		return true
	}
}

func TestImages(t *testing.T) {
	if testing.Short() {
		t.Skip("needs `make images`")
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, prog := range []string{"controller", "speaker"} {
		t.Run(prog, func(t *testing.T) {
			a := readArchive(t, filepath.Join(root, "bin", "images", prog+".oci.tar"))
			var index manifest
			decode(t, a["index.json"], &index)
			platforms := map[string]bool{}
			for _, d := range index.Manifests {
				if d.Platform == nil {
					t.Fatalf("index entry %s has no platform", d.Digest)
				}
				platform := d.Platform.OS + "/" + d.Platform.Architecture
				platforms[platform] = true
				t.Run(platform, func(t *testing.T) { checkImage(t, a, d, prog, platform) })
			}
			for _, want := range []string{"linux/amd64", "linux/arm64"} {
				if !platforms[want] {
					t.Errorf("no %s image in %s's index (has %v)", want, prog, platforms)
				}
			}
		})
	}
}

func checkImage(t *testing.T, a ociArchive, d descriptor, prog, platform string) {
	var m manifest
	decode(t, a.blob(t, d), &m)
	var cfg imageConfig
	decode(t, a.blob(t, m.Config), &cfg)
	if cfg.OS+"/"+cfg.Architecture != platform {
		t.Errorf("config says %s/%s, index says %s", cfg.OS, cfg.Architecture, platform)
	}
	if fmt.Sprint(cfg.Config.Entrypoint) != fmt.Sprint([]string{"/" + prog}) {
		t.Errorf("entrypoint %v, want [/%s]", cfg.Config.Entrypoint, prog)
	}
	if cfg.Config.User != "65532:65532" {
		t.Errorf("default user %q, want the non-root 65532:65532", cfg.Config.User)
	}
	all := map[string]*tar.Header{}
	bin := filepath.Join(t.TempDir(), prog)
	found := false
	for _, l := range m.Layers {
		layer := a.blob(t, l)
		for name, h := range filesOf(t, layer) {
			all[name] = h
		}
		found = extract(t, layer, prog, bin) || found
	}
	for _, want := range []string{"etc/passwd", "etc/group", "tmp", prog} {
		if all[want] == nil {
			t.Errorf("image has no /%s", want)
		}
	}
	if len(all) > 8 {
		t.Errorf("image has %d files, want a minimal base: %v", len(all), all)
	}
	if !found {
		t.Fatalf("no /%s in the layers", prog)
	}
	var cmd *exec.Cmd
	switch {
	case platform == runtime.GOOS+"/"+runtime.GOARCH:
		cmd = exec.Command(bin, "--version")
	case platform == "linux/arm64":
		qemu, err := exec.LookPath("qemu-aarch64-static")
		if err != nil {
			t.Fatalf("qemu-aarch64-static runs the arm64 binary (make deps installs qemu-user-static): %v", err)
		}
		cmd = exec.Command(qemu, bin, "--version")
	default:
		t.Fatalf("cannot run a %s binary here", platform)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v\n%s", prog, err, out)
	}
	want := "barelb " + prog + " " + cfg.Config.Labels["org.opencontainers.image.version"]
	if !strings.HasPrefix(string(out), want) || !strings.Contains(string(out), platform) {
		t.Errorf("%s --version printed %q, want %q… for %s", prog, out, want, platform)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
}
