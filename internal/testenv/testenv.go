package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/barelb/barelb/internal/scheme"
)

// Env is a running control plane.
type Env struct {
	// Config reaches the API server as an administrator.
	Config *rest.Config
	// Client is a controller-runtime client with barelb's scheme.
	Client client.Client
	// Scheme knows the built-in types and barelb's.
	Scheme *runtime.Scheme
	// RepoRoot is the repository's top folder.
	RepoRoot string
	// Environment is the underlying envtest environment, for its
	// ControlPlane (to add users, for example).
	Environment *envtest.Environment
}

// Options change what Start starts.
type Options struct {
	// APIServerFlags are extra kube-apiserver flags, name without dashes.
	APIServerFlags map[string]string
}

// RepoRoot finds the repository's top folder from the working directory of
// a test, which is its package's folder.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the working directory: %w", err)
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && isProductModule(data) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod of module github.com/barelb/barelb above the working directory")
		}
		dir = parent
	}
}

func isProductModule(goMod []byte) bool {
	const want = "module github.com/barelb/barelb\n"
	return len(goMod) >= len(want) && string(goMod[:len(want)]) == want
}

// NewScheme returns the scheme barelb's programs use.
func NewScheme() (*runtime.Scheme, error) { return scheme.New() }

// Start starts etcd and kube-apiserver with barelb's CRDs installed and
// stops them when the test ends.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	env, err := start(opts)
	if err != nil {
		t.Fatalf("starting the test control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Environment.Stop(); err != nil {
			t.Errorf("stopping the test control plane: %v", err)
		}
	})
	return env
}

func start(opts Options) (*Env, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(root, "bin")
	}
	for _, bin := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			return nil, fmt.Errorf("%s is missing from %s (run `make tools`): %w", bin, assets, err)
		}
	}
	sch, err := NewScheme()
	if err != nil {
		return nil, err
	}
	environment := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
		Scheme:                sch,
	}
	if len(opts.APIServerFlags) > 0 {
		args := environment.ControlPlane.GetAPIServer().Configure()
		for name, value := range opts.APIServerFlags {
			args.Set(name, value)
		}
	}
	cfg, err := environment.Start()
	if err != nil {
		return nil, fmt.Errorf("starting envtest with binaries from %s: %w", assets, err)
	}
	c, err := client.New(cfg, client.Options{Scheme: sch})
	if err != nil {
		_ = environment.Stop()
		return nil, fmt.Errorf("creating a client: %w", err)
	}
	return &Env{Config: cfg, Client: c, Scheme: sch, RepoRoot: root, Environment: environment}, nil
}

// WriteKubeconfig writes a kubeconfig for an administrator of the control
// plane into a temporary folder of the test, for programs run by the test.
func (e *Env) WriteKubeconfig(t testing.TB) string {
	t.Helper()
	user, err := e.Environment.ControlPlane.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatalf("adding a user: %v", err)
	}
	data, err := user.KubeConfig()
	if err != nil {
		t.Fatalf("writing the user's kubeconfig: %v", err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// BuildPrograms builds the named main packages of the repository (like
// "./controller") into dir.
func BuildPrograms(ctx context.Context, dir string, pkgs ...string) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	args := append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %v: %w\n%s", pkgs, err, out)
	}
	return nil
}

// ManagerOptions are the options of a manager under test on e: e's scheme,
// no metrics or health endpoint (tests run side by side), log to log, and
// no check that controller names are unique in the process, which a test
// run with -count=2, or one starting a manager twice, would fail.
func (e *Env) ManagerOptions(log logr.Logger) ctrl.Options {
	return ctrl.Options{
		Scheme:                 e.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
		Logger:                 log,
	}
}
