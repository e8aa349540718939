package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
)

// Invocation is what a program is started with: main passes the process's
// own, tests their own.
type Invocation struct {
	// Args are the command-line arguments after the program name.
	Args []string
	// Getenv reads the environment; nil means os.Getenv.
	Getenv func(string) string
	// Stdout receives --version and Stderr the logs and -help; nil means
	// the process's own.
	Stdout, Stderr io.Writer
	// Version is the program's version, set at link time; empty or "dev"
	// falls back to the module version Go recorded in the binary.
	Version string
}

func (inv Invocation) getenv(key string) string {
	if inv.Getenv == nil {
		return os.Getenv(key)
	}
	return inv.Getenv(key)
}

func (inv Invocation) stdout() io.Writer {
	if inv.Stdout == nil {
		return os.Stdout
	}
	return inv.Stdout
}

func (inv Invocation) stderr() io.Writer {
	if inv.Stderr == nil {
		return os.Stderr
	}
	return inv.Stderr
}

// parseFlags parses args with the shared flags and whatever bind adds, on a
// FlagSet of the program's own (see Options.BindFlags).
func parseFlags(program string, inv Invocation, o *Options, bind func(*flag.FlagSet)) error {
	fs := flag.NewFlagSet(program, flag.ContinueOnError)
	fs.SetOutput(inv.stderr())
	o.BindFlags(fs)
	if bind != nil {
		bind(fs)
	}
	if err := fs.Parse(inv.Args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		// The flag package has printed the error and the usage text.
		return &UsageError{Err: err, reported: true}
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q: %s takes flags only", fs.Arg(0), program)
	}
	if o.ShowVersion {
		return nil
	}
	return o.Validate()
}

// Version is the version to report: v when set at link time, otherwise
// the module version Go recorded in the binary (set by `go install
// module@version`), otherwise "dev" with the VCS revision when recorded.
func Version(v string) string {
	if v != "" && v != "dev" {
		return v
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if mv := info.Main.Version; mv != "" && mv != "(devel)" {
		return mv
	}
	var revision, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if revision == "" {
		return "dev"
	}
	if len(revision) > 12 {
		revision = revision[:12]
	}
	if modified == "true" {
		revision += "-dirty"
	}
	return "dev+" + revision
}

func printVersion(inv Invocation, program string) error {
	_, err := fmt.Fprintf(inv.stdout(), "barelb %s %s (%s %s/%s)\n",
		program, Version(inv.Version), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if err != nil {
		return fmt.Errorf("printing the version: %w", err)
	}
	return nil
}

// startup is what start needs beyond the shared options.
type startup struct {
	program string
	options Options
	// logValues are key/value pairs logged with the start message.
	logValues []any
	manager   []Option
	// setup adds the program's reconcilers to the manager.
	setup func(manager.Manager) error
}

// start sets up logging, connects to the API server and runs a manager
// until ctx ends. Logging is process-wide state: controller-runtime and
// client-go (leader election, for one) log through their own global
// loggers, so both are pointed at ours here and only here.
func start(ctx context.Context, inv Invocation, s startup) error {
	log, err := NewLogger(s.options, inv.stderr())
	if err != nil {
		return err
	}
	crlog.SetLogger(log)
	klog.SetLogger(log)

	version := Version(inv.Version)
	cfg, err := s.options.RESTConfig(fmt.Sprintf("barelb-%s/%s", s.program, version))
	if err != nil {
		return err
	}
	mgr, err := NewManager(cfg, s.options, s.manager...)
	if err != nil {
		return err
	}
	if s.setup != nil {
		if err := s.setup(mgr); err != nil {
			return fmt.Errorf("setting up the %s: %w", s.program, err)
		}
	}
	log.Info("starting", append([]any{
		"program", s.program,
		"version", version,
		"namespace", s.options.Namespace,
		"apiServer", cfg.Host,
		"metricsBindAddress", s.options.MetricsBindAddress,
		"healthProbeBindAddress", s.options.HealthProbeBindAddress,
	}, s.logValues...)...)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running the %s: %w", s.program, err)
	}
	log.Info("stopped", "program", s.program)
	return nil
}

// configObjects are the kinds that make up barelb's configuration. Both
// programs act on the configuration as a whole, so both report ready only
// once all of it is cached.
func configObjects() []client.Object {
	return []client.Object{
		&barelbv1beta1.IPAddressPool{},
		&barelbv1beta1.L2Advertisement{},
		&barelbv1beta1.BGPAdvertisement{},
		&barelbv1beta1.BGPPeer{},
		&barelbv1beta1.BFDProfile{},
		&barelbv1beta1.Community{},
	}
}
