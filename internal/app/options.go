package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Defaults shared by both programs.
const (
	// DefaultNamespace is where barelb runs and the only namespace whose
	// barelb configuration objects count.
	DefaultNamespace = "barelb-system"

	// DefaultKubeAPIQPS and DefaultKubeAPIBurst are well above
	// controller-runtime's 20 and 30: the controller writes one status per
	// Service and the speakers react to every Service change, so the
	// default limits would make large clusters converge slowly.
	DefaultKubeAPIQPS   = 200
	DefaultKubeAPIBurst = 400
)

// Log levels and formats accepted by --log-level and --log-format.
var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"json", "text"}
)

// Options are the command-line settings both programs share. The zero value
// is not useful: start from DefaultOptions.
type Options struct {
	// Kubeconfig is a kubeconfig file's path; empty means controller-runtime's
	// usual search: $KUBECONFIG, then in-cluster, then ~/.kube/config.
	Kubeconfig string
	// MetricsBindAddress serves Prometheus metrics (over plain HTTP
	// unless MetricsSecure); "0" turns the server off.
	MetricsBindAddress string
	// MetricsSecure serves metrics over HTTPS to callers the API server
	// authenticates (TokenReview) and authorizes (SubjectAccessReview of
	// "get" on the path /metrics) only: controller-runtime's filters. The
	// program's ServiceAccount then needs to create tokenreviews and
	// subjectaccessreviews.
	MetricsSecure bool
	// MetricsCertDir holds tls.crt and tls.key for MetricsSecure (reloaded
	// when they change); empty serves a self-signed certificate.
	MetricsCertDir string
	// HealthProbeBindAddress serves /healthz and /readyz; "0" turns the
	// server off.
	HealthProbeBindAddress string
	// LogLevel is one of debug, info, warn, error.
	LogLevel string
	// LogFormat is json or text.
	LogFormat string
	// Namespace is where barelb runs; barelb configuration objects in other
	// namespaces are ignored.
	Namespace string
	// KubeAPIQPS and KubeAPIBurst rate-limit requests to the API server.
	KubeAPIQPS   float64
	KubeAPIBurst int
	// ShowVersion asks the program to print its version and exit.
	ShowVersion bool
}

// DefaultOptions returns the shared defaults with the program's own metrics
// and health-probe addresses, which differ so that the controller and a
// speaker can share a host.
func DefaultOptions(metricsBindAddress, healthProbeBindAddress string) Options {
	return Options{
		MetricsBindAddress:     metricsBindAddress,
		HealthProbeBindAddress: healthProbeBindAddress,
		LogLevel:               "info",
		LogFormat:              "json",
		Namespace:              DefaultNamespace,
		KubeAPIQPS:             DefaultKubeAPIQPS,
		KubeAPIBurst:           DefaultKubeAPIBurst,
	}
}

// BindFlags registers the shared flags on fs, with o's current values as
// their defaults.
//
// Use a FlagSet of your own, not flag.CommandLine: controller-runtime's
// client/config package registers its own --kubeconfig there when imported,
// and a second registration would panic.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig,
		"Path to a kubeconfig file. When empty: $KUBECONFIG, then the in-cluster configuration, then ~/.kube/config.")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", o.MetricsBindAddress,
		`Address (host:port) to serve Prometheus metrics on over HTTP; "0" turns metrics off.`)
	fs.BoolVar(&o.MetricsSecure, "metrics-secure", o.MetricsSecure,
		"Serve metrics over HTTPS, only to callers with a bearer token the API server authenticates (TokenReview) and "+
			"authorizes to get the non-resource URL /metrics (SubjectAccessReview).")
	fs.StringVar(&o.MetricsCertDir, "metrics-cert-dir", o.MetricsCertDir,
		"With --metrics-secure: directory holding tls.crt and tls.key (reloaded when they change); empty serves a self-signed certificate.")
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", o.HealthProbeBindAddress,
		`Address (host:port) to serve /healthz and /readyz on; "0" turns the probes off.`)
	fs.StringVar(&o.LogLevel, "log-level", o.LogLevel, "Least severe messages logged: debug, info, warn or error.")
	fs.StringVar(&o.LogFormat, "log-format", o.LogFormat, "Log format: json or text.")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace,
		"Namespace barelb runs in; barelb configuration objects in other namespaces are ignored.")
	fs.Float64Var(&o.KubeAPIQPS, "kube-api-qps", o.KubeAPIQPS, "Sustained requests per second to the Kubernetes API server.")
	fs.IntVar(&o.KubeAPIBurst, "kube-api-burst", o.KubeAPIBurst, "Requests to the Kubernetes API server allowed in a burst.")
	fs.BoolVar(&o.ShowVersion, "version", o.ShowVersion, "Print the version and exit.")
}

// Validate reports the first invalid setting as a *UsageError.
func (o *Options) Validate() error {
	if !slices.Contains(logLevels, o.LogLevel) {
		return usageErrorf("--log-level %q: want one of %s", o.LogLevel, strings.Join(logLevels, ", "))
	}
	if !slices.Contains(logFormats, o.LogFormat) {
		return usageErrorf("--log-format %q: want one of %s", o.LogFormat, strings.Join(logFormats, ", "))
	}
	if errs := validation.IsDNS1123Label(o.Namespace); len(errs) > 0 {
		return usageErrorf("--namespace %q is not a namespace name: %v", o.Namespace, errs)
	}
	if err := validateBindAddress(o.MetricsBindAddress); err != nil {
		return usageErrorf("--metrics-bind-address: %w", err)
	}
	if o.MetricsCertDir != "" && !o.MetricsSecure {
		return usageErrorf("--metrics-cert-dir needs --metrics-secure")
	}
	if err := validateBindAddress(o.HealthProbeBindAddress); err != nil {
		return usageErrorf("--health-probe-bind-address: %w", err)
	}
	// client-go turns rate limiting off for a negative QPS; barelb always
	// wants it, so that a bug cannot flood the API server.
	if !(o.KubeAPIQPS > 0) {
		return usageErrorf("--kube-api-qps %v: want a number above 0", o.KubeAPIQPS)
	}
	if o.KubeAPIBurst < 1 {
		return usageErrorf("--kube-api-burst %d: want a whole number above 0", o.KubeAPIBurst)
	}
	return nil
}

// validateBindAddress accepts "0" (off) or host:port with a port number, so
// that a typo is a usage error now rather than a listen error later.
func validateBindAddress(addr string) error {
	if addr == "0" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want host:port or \"0\": %w", addr, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	return nil
}

// validateLoopbackAddress accepts "0" or empty (off) or host:port whose
// host is a loopback address or "localhost": what serves profiles, which
// carry no authentication and tell much about the program, is reachable
// from the node itself only (kubectl port-forward or a shell on it), not
// from the network, whatever the pod's network (the speaker's is the
// host's).
func validateLoopbackAddress(addr string) error {
	if addr == "" || addr == "0" {
		return nil
	}
	if err := validateBindAddress(addr); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(addr)
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q: want a loopback host (127.0.0.1, [::1] or localhost), so that only the node itself reaches it", addr)
	}
	return nil
}

// UsageError is a mistake in the command line or the environment. The
// programs exit with status 2 for it, as the flag package does.
type UsageError struct {
	Err error
	// reported is set when the flag package has already printed the error
	// with the usage text, so that it is not printed twice.
	reported bool
}

func (e *UsageError) Error() string { return e.Err.Error() }

func (e *UsageError) Unwrap() error { return e.Err }

func usageErrorf(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// Exit prints err for a person on stderr, prefixed with the program's
// name, unless there is nothing to add, and returns the process exit status
// for it (see ExitCode).
func Exit(stderr io.Writer, program string, err error) int {
	var usage *UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, &usage) && usage.reported:
	default:
		fmt.Fprintf(stderr, "%s: %v\n", program, err)
	}
	return ExitCode(err)
}

// ExitCode is the process exit status for the error a Run function
// returned: 0 for none or for -help, 2 for a usage error, 1 otherwise.
func ExitCode(err error) int {
	var usage *UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usage):
		return 2
	default:
		return 1
	}
}
