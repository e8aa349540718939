package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/barelb/barelb/internal/k8s/l2announcer"
)

func env(vars map[string]string) func(string) string {
	return func(key string) string { return vars[key] }
}

func TestParseController(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int    // ExitCode of the error
		wantErr  string // part of the error's text
		check    func(t *testing.T, o ControllerOptions)
	}{
		{
			name: "defaults",
			check: func(t *testing.T, o ControllerOptions) {
				want := ControllerOptions{
					Options: Options{
						MetricsBindAddress:     ":7472",
						HealthProbeBindAddress: ":7474",
						LogLevel:               "info",
						LogFormat:              "json",
						Namespace:              "barelb-system",
						KubeAPIQPS:             1000,
						KubeAPIBurst:           2000,
					},
					LeaderElect:      true,
					MemberlistSecret: "barelb-memberlist",
					Webhook: WebhookOptions{
						Port: 9443, CertSecret: "barelb-webhook-cert", Configuration: "barelb-validating-webhook",
						Service: "barelb-webhook-service", CertLifetime: 90 * 24 * time.Hour,
					},
				}
				if o != want {
					t.Errorf("got %+v, want %+v", o, want)
				}
			},
		},
		{
			name: "every flag",
			args: []string{
				"--kubeconfig=/k", "--metrics-bind-address=127.0.0.1:1", "--health-probe-bind-address=0",
				"--log-level=debug", "--log-format=text", "--namespace=lb", "--kube-api-qps=5.5",
				"--kube-api-burst=7", "--leader-elect=false", "--memberlist-secret=",
				"--webhook-port=0", "--webhook-cert-secret=c", "--webhook-configuration=v", "--webhook-service=s",
				"--webhook-cert-lifetime=2h", "--webhook-cert-namespace=certs",
			},
			check: func(t *testing.T, o ControllerOptions) {
				want := ControllerOptions{
					Options: Options{
						Kubeconfig:             "/k",
						MetricsBindAddress:     "127.0.0.1:1",
						HealthProbeBindAddress: "0",
						LogLevel:               "debug",
						LogFormat:              "text",
						Namespace:              "lb",
						KubeAPIQPS:             5.5,
						KubeAPIBurst:           7,
					},
					LeaderElect: false,
					Webhook: WebhookOptions{Port: 0, CertSecret: "c", Configuration: "v", Service: "s", CertLifetime: 2 * time.Hour,
						CertNamespace: "certs"},
				}
				if o != want {
					t.Errorf("got %+v, want %+v", o, want)
				}
			},
		},
		{name: "bad log level", args: []string{"--log-level=loud"}, wantCode: 2, wantErr: `--log-level "loud"`},
		{name: "bad log format", args: []string{"--log-format=xml"}, wantCode: 2, wantErr: `--log-format "xml"`},
		{name: "bad namespace", args: []string{"--namespace=Bad_NS"}, wantCode: 2, wantErr: "--namespace"},
		{name: "empty namespace", args: []string{"--namespace="}, wantCode: 2, wantErr: "--namespace"},
		{name: "metrics address without port", args: []string{"--metrics-bind-address=localhost"}, wantCode: 2, wantErr: "--metrics-bind-address"},
		{name: "health address with bad port", args: []string{"--health-probe-bind-address=:http"}, wantCode: 2, wantErr: "--health-probe-bind-address"},
		{name: "zero qps", args: []string{"--kube-api-qps=0"}, wantCode: 2, wantErr: "--kube-api-qps"},
		{name: "NaN qps", args: []string{"--kube-api-qps=NaN"}, wantCode: 2, wantErr: "--kube-api-qps"},
		{name: "zero burst", args: []string{"--kube-api-burst=0"}, wantCode: 2, wantErr: "--kube-api-burst"},
		{name: "unknown flag", args: []string{"--bogus"}, wantCode: 2, wantErr: "bogus"},
		{name: "webhook port out of range", args: []string{"--webhook-port=70000"}, wantCode: 2, wantErr: "--webhook-port"},
		{name: "webhook secret not a name", args: []string{"--webhook-cert-secret=A B"}, wantCode: 2, wantErr: "--webhook-cert-secret"},
		{name: "webhook certificate namespace not a name", args: []string{"--webhook-cert-namespace=Certs"}, wantCode: 2, wantErr: "--webhook-cert-namespace"},
		{name: "webhook certificate lifetime too short", args: []string{"--webhook-cert-lifetime=5s"}, wantCode: 2, wantErr: "--webhook-cert-lifetime"},
		{
			name: "a disabled webhook's settings are not checked",
			args: []string{"--disable-webhook", "--webhook-cert-secret="},
			check: func(t *testing.T, o ControllerOptions) {
				if !o.Webhook.Disable {
					t.Error("Disable is false")
				}
			},
		},
		{name: "flag without value", args: []string{"--log-level"}, wantCode: 2, wantErr: "log-level"},
		{name: "stray argument", args: []string{"run"}, wantCode: 2, wantErr: `unexpected argument "run"`},
		{name: "help", args: []string{"-h"}, wantCode: 0, wantErr: flag.ErrHelp.Error()},
		{
			// --version must work whatever else is wrong, so that it can be
			// asked of any installed binary.
			name: "version skips validation",
			args: []string{"--version", "--log-level=loud"},
			check: func(t *testing.T, o ControllerOptions) {
				if !o.ShowVersion {
					t.Error("ShowVersion is false")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			o, err := parseController(Invocation{Args: tt.args, Stderr: &stderr})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				tt.check(t, o)
				return
			}
			if err == nil {
				t.Fatalf("no error, want one containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if got := ExitCode(err); got != tt.wantCode {
				t.Errorf("ExitCode = %d, want %d", got, tt.wantCode)
			}
		})
	}
}

func TestParseSpeaker(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantNode string
		// wantMemberlistOff: --memberlist=false; memberlist is on by
		// default.
		wantMemberlistOff bool
		wantRelease       bool
		wantErr           string // a usage error containing this
	}{
		{name: "node from environment", env: map[string]string{"NODE_NAME": "worker-1"}, wantNode: "worker-1"},
		{name: "flag beats environment", args: []string{"--node-name=worker-2"}, env: map[string]string{"NODE_NAME": "worker-1"}, wantNode: "worker-2"},
		{name: "node from flag alone", args: []string{"--node-name=worker-2"}, wantNode: "worker-2"},
		{name: "no node name", wantErr: "NODE_NAME"},
		{name: "empty node name", args: []string{"--node-name="}, env: map[string]string{"NODE_NAME": ""}, wantErr: "--node-name"},
		{name: "bad node name", args: []string{"--node-name=Not A Node"}, wantErr: `"Not A Node"`},
		{name: "bad shared flag", args: []string{"--log-format=xml"}, env: map[string]string{"NODE_NAME": "w"}, wantErr: "--log-format"},
		{name: "version needs no node name", args: []string{"--version"}},
		{name: "memberlist off", args: []string{"--node-name=w", "--memberlist=false"}, wantNode: "w", wantMemberlistOff: true},
		{name: "memberlist off with its other flags", args: []string{"--node-name=w", "--memberlist=false", "--memberlist-port=7000", "--memberlist-key-env=K"},
			wantNode: "w", wantMemberlistOff: true},
		{name: "memberlist on explicitly", args: []string{"--node-name=w", "--memberlist=true"}, wantNode: "w"},
		{name: "memberlist as a bare flag", args: []string{"--node-name=w", "--memberlist"}, wantNode: "w"},
		{name: "memberlist not a boolean", args: []string{"--node-name=w", "--memberlist=off"}, wantErr: `invalid boolean value "off" for -memberlist`},
		{name: "negative gc percent", args: []string{"--node-name=w", "--gc-percent=-1"}, wantErr: "--gc-percent"},
		{name: "restart hold", args: []string{"--node-name=w", "--restart-hold=30s"}, wantNode: "w"},
		{name: "negative restart hold", args: []string{"--node-name=w", "--restart-hold=-1s"}, wantErr: "--restart-hold"},
		{name: "restart hold past its bound", args: []string{"--node-name=w", "--restart-hold=2m"}, wantErr: "--restart-hold"},
		// Profiles carry no authentication: the node itself only.
		{name: "pprof on every address", args: []string{"--node-name=w", "--pprof-bind-address=:6060"}, wantErr: "--pprof-bind-address"},
		{name: "pprof on a LAN address", args: []string{"--node-name=w", "--pprof-bind-address=192.0.2.7:6060"}, wantErr: "loopback"},
		{name: "pprof on 127.0.0.1", args: []string{"--node-name=w", "--pprof-bind-address=127.0.0.1:6060"}, wantNode: "w"},
		{name: "pprof on ::1", args: []string{"--node-name=w", "--pprof-bind-address=[::1]:6060"}, wantNode: "w"},
		{name: "pprof on localhost", args: []string{"--node-name=w", "--pprof-bind-address=localhost:6060"}, wantNode: "w"},
		{name: "pprof off", args: []string{"--node-name=w", "--pprof-bind-address=0"}, wantNode: "w"},
		{name: "secure metrics", args: []string{"--node-name=w", "--metrics-secure", "--metrics-cert-dir=/certs"}, wantNode: "w"},
		{name: "metrics certificates without secure metrics", args: []string{"--node-name=w", "--metrics-cert-dir=/certs"}, wantErr: "--metrics-cert-dir needs --metrics-secure"},
		{name: "negative program pages interval", args: []string{"--node-name=w", "--program-pages-release-interval=-1m"}, wantErr: "--program-pages-release-interval"},
		{name: "program pages released once", args: []string{"--node-name=w", "--release-startup-pages", "--program-pages-release-interval=0"}, wantNode: "w", wantRelease: true},
		{name: "program pages released every 5m", args: []string{"--node-name=w", "--release-startup-pages=true", "--program-pages-release-interval=5m"}, wantNode: "w", wantRelease: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseSpeaker(Invocation{Args: tt.args, Getenv: env(tt.env), Stderr: &bytes.Buffer{}})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				if code := ExitCode(err); code != 2 {
					t.Errorf("ExitCode = %d, want 2", code)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if o.NodeName != tt.wantNode {
				t.Errorf("NodeName = %q, want %q", o.NodeName, tt.wantNode)
			}
			// Off unless asked for (issue 14): it lowers VmRSS only.
			if o.ReleaseStartupPages != tt.wantRelease {
				t.Errorf("ReleaseStartupPages = %v, want %v", o.ReleaseStartupPages, tt.wantRelease)
			}
			if o.Memberlist == tt.wantMemberlistOff {
				t.Errorf("Memberlist = %v, want %v", o.Memberlist, !tt.wantMemberlistOff)
			}
			if o.MetricsBindAddress != ":7473" || o.HealthProbeBindAddress != ":7475" {
				t.Errorf("addresses %q and %q, want the speaker's defaults", o.MetricsBindAddress, o.HealthProbeBindAddress)
			}
		})
	}
}

// TestRunStopsEarly runs the programs with arguments that end them before
// they reach for an API server.
func TestRunStopsEarly(t *testing.T) {
	tests := []struct {
		name       string
		run        func(context.Context, Invocation) error
		program    string
		args       []string
		env        map[string]string
		version    string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "controller version", run: RunController, program: "controller", args: []string{"--version"}, version: "v1.2.3", wantStdout: "barelb controller v1.2.3 (go"},
		{name: "speaker version", run: RunSpeaker, program: "speaker", args: []string{"--version"}, version: "v1.2.3", wantStdout: "barelb speaker v1.2.3 (go"},
		{name: "unset version", run: RunController, program: "controller", args: []string{"--version"}, wantStdout: "barelb controller "},
		{name: "bad log level", run: RunController, program: "controller", args: []string{"--log-level=loud"}, wantCode: 2, wantStderr: "controller: --log-level \"loud\": want one of debug, info, warn, error\n"},
		{name: "speaker without node", run: RunSpeaker, program: "speaker", wantCode: 2, wantStderr: "speaker: no node name"},
		{name: "unknown flag printed once", run: RunSpeaker, program: "speaker", args: []string{"--bogus"}, wantCode: 2, wantStderr: "flag provided but not defined: -bogus\nUsage of speaker:\n"},
		{name: "help", run: RunSpeaker, program: "speaker", args: []string{"--help"}, wantCode: 0, wantStderr: "Usage of speaker:\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := tt.run(context.Background(), Invocation{Args: tt.args, Getenv: env(tt.env), Stdout: &stdout, Stderr: &stderr, Version: tt.version})
			if code := Exit(&stderr, tt.program, err); code != tt.wantCode {
				t.Errorf("exit code %d, want %d (error %v)", code, tt.wantCode, err)
			}
			if !strings.HasPrefix(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout %q, want it to start with %q", stdout.String(), tt.wantStdout)
			}
			if tt.wantStdout == "" && stdout.Len() > 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
			if !strings.HasPrefix(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr %q, want it to start with %q", stderr.String(), tt.wantStderr)
			}
			if strings.Count(stderr.String(), "bogus") > 1 {
				t.Errorf("the error is printed twice: %q", stderr.String())
			}
		})
	}
}

func TestExit(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantCode   int
		wantStderr string
	}{
		{name: "success", err: nil, wantCode: 0},
		{name: "help", err: flag.ErrHelp, wantCode: 0},
		{name: "usage", err: usageErrorf("bad"), wantCode: 2, wantStderr: "p: bad\n"},
		{name: "wrapped usage", err: errors.Join(errors.New("x"), usageErrorf("bad")), wantCode: 2, wantStderr: "p: x\nbad\n"},
		{name: "usage already printed", err: &UsageError{Err: errors.New("bad"), reported: true}, wantCode: 2},
		{name: "failure", err: errors.New("broken"), wantCode: 1, wantStderr: "p: broken\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := Exit(&stderr, "p", tt.err); code != tt.wantCode {
				t.Errorf("code %d, want %d", code, tt.wantCode)
			}
			if stderr.String() != tt.wantStderr {
				t.Errorf("stderr %q, want %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}

func TestNewLogger(t *testing.T) {
	tests := []struct {
		level, format string
		want          []string // messages written, of "debug", "info", "error"
		wantErr       bool
	}{
		{level: "debug", format: "json", want: []string{"debug", "info", "error"}},
		{level: "info", format: "json", want: []string{"info", "error"}},
		{level: "warn", format: "text", want: []string{"error"}},
		{level: "error", format: "text", want: []string{"error"}},
		{level: "trace", format: "json", wantErr: true},
		{level: "info", format: "yaml", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.level+"/"+tt.format, func(t *testing.T) {
			var out bytes.Buffer
			o := DefaultOptions("0", "0")
			o.LogLevel, o.LogFormat = tt.level, tt.format
			log, err := NewLogger(o, &out)
			if tt.wantErr {
				if ExitCode(err) != 2 {
					t.Fatalf("error %v, want a usage error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			log.V(1).Info("debug")
			log.Info("info")
			log.Error(errors.New("boom"), "error")

			var got []string
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				if line == "" {
					continue
				}
				if tt.format == "json" {
					var entry struct {
						Msg string `json:"msg"`
						TS  string `json:"ts"`
					}
					if err := json.Unmarshal([]byte(line), &entry); err != nil {
						t.Fatalf("line %q is not JSON: %v", line, err)
					}
					if entry.TS == "" || !strings.Contains(entry.TS, "T") {
						t.Errorf("timestamp %q, want RFC 3339", entry.TS)
					}
					got = append(got, entry.Msg)
					continue
				}
				if strings.HasPrefix(line, "{") {
					t.Errorf("text line %q looks like JSON", line)
				}
				fields := strings.Split(line, "\t")
				if len(fields) < 3 {
					t.Fatalf("text line %q has too few fields", line)
				}
				got = append(got, fields[2])
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("wrote %q, want %q; output:\n%s", got, tt.want, out.String())
			}
		})
	}
}

func TestRESTConfig(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	const content = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://192.0.2.1:6443
users:
- name: u
  user:
    token: secret
contexts:
- name: ctx
  context: {cluster: c, user: u}
current-context: ctx
`
	if err := os.WriteFile(kubeconfig, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}

	o := DefaultOptions("0", "0")
	o.Kubeconfig = kubeconfig
	cfg, err := o.RESTConfig("barelb-test/v0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://192.0.2.1:6443" || cfg.QPS != 200 || cfg.Burst != 400 || cfg.UserAgent != "barelb-test/v0" {
		t.Errorf("got host %q, QPS %v, burst %d, user agent %q", cfg.Host, cfg.QPS, cfg.Burst, cfg.UserAgent)
	}

	o.Kubeconfig = filepath.Join(dir, "missing")
	if _, err := o.RESTConfig(""); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("error %v, want one naming the missing file", err)
	}
}

func TestVersion(t *testing.T) {
	if got := Version("v1.2.3"); got != "v1.2.3" {
		t.Errorf("Version(v1.2.3) = %q", got)
	}
	// A test binary has no module version, so the fallback is "dev",
	// perhaps with a revision.
	for _, v := range []string{"", "dev"} {
		if got := Version(v); !strings.HasPrefix(got, "dev") && !strings.HasPrefix(got, "v") {
			t.Errorf("Version(%q) = %q, want dev or a module version", v, got)
		}
	}
}

func TestNewManagerNeedsConfig(t *testing.T) {
	if _, err := NewManager(nil, DefaultOptions("0", "0")); err == nil {
		t.Error("no error for a nil rest.Config")
	}
}

func TestNamespacedBarelbObjects(t *testing.T) {
	scheme, err := NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	byObject, err := namespacedBarelbObjects(scheme, "lb")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for obj, by := range byObject {
		kind := reflect.TypeOf(obj).Elem().Name()
		kinds[kind] = true
		if len(by.Namespaces) != 1 || by.Namespaces["lb"].LabelSelector != nil {
			t.Errorf("%s: namespaces %v, want just lb", kind, by.Namespaces)
		}
	}
	for _, obj := range configObjects() {
		if !kinds[reflect.TypeOf(obj).Elem().Name()] {
			t.Errorf("%T is not restricted to the namespace", obj)
		}
	}
	for kind := range kinds {
		if strings.HasSuffix(kind, "List") {
			t.Errorf("list kind %s in the cache options", kind)
		}
	}
}

func TestAddTransforms(t *testing.T) {
	scheme, err := NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	byObject, err := namespacedBarelbObjects(scheme, "lb")
	if err != nil {
		t.Fatal(err)
	}
	opts := cache.Options{ByObject: byObject}
	kinds := len(byObject)
	if err := addTransforms(&opts, scheme, l2announcer.CacheTransforms()); err != nil {
		t.Fatal(err)
	}
	if opts.DefaultTransform == nil {
		t.Error("managed fields are not stripped by default")
	}
	// Services, EndpointSlices and Nodes are added; ServiceL2Status keeps
	// its entry, and its namespace.
	if got, want := len(opts.ByObject), kinds+3; got != want {
		t.Errorf("%d kinds in the cache options, want %d", got, want)
	}
	transformed := 0
	for obj, by := range opts.ByObject {
		kind := reflect.TypeOf(obj).Elem().Name()
		if by.Transform != nil {
			transformed++
		}
		if kind == "ServiceL2Status" && (by.Transform == nil || len(by.Namespaces) != 1) {
			t.Errorf("ServiceL2Status: transform %v, namespaces %v; want a transform in namespace lb only", by.Transform != nil, by.Namespaces)
		}
	}
	if transformed != 4 {
		t.Errorf("%d kinds with a transform, want 4", transformed)
	}
}
