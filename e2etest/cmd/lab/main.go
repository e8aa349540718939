package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr/funcr"

	"github.com/barelb/barelb/e2etest/lab"
	"github.com/barelb/barelb/internal/testenv"
)

func main() {
	lab.RunHelperMode()
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "up":
		err = up(args)
	case "supervise":
		err = supervise(args)
	case "status":
		err = status(args)
	case "down":
		err = down(args)
	case "exec":
		err = execIn(args)
	case "kill", "stop", "restart":
		err = control(os.Args[1], args)
	default:
		usage()
	}
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			os.Exit(exit.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage: lab up [--nodes N] [--keep] [--prefix P] [--barelb=false]
       lab status | down [--all] | exec HOST -- CMD... | kill|stop|restart NODE speaker|kube-proxy (or cp controller)
       (--lab PREFIX or $BARELB_LAB chooses among several labs)`)
	os.Exit(2)
}

func up(args []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	nodes := fs.Int("nodes", 3, "number of nodes")
	keep := fs.Bool("keep", false, "leave what a failed up made, for inspection")
	prefix := fs.String("prefix", "", "name prefix (default blb + 4 random hex digits)")
	barelb := fs.Bool("barelb", true, "run barelb's controller and speakers (bin/, `make build`)")
	_ = fs.Parse(args)
	start := time.Now()
	if *prefix == "" {
		*prefix = fmt.Sprintf("blb%04x", time.Now().UnixNano()&0xffff)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		return fmt.Errorf("run lab from inside the repository: %w", err)
	}
	dir := filepath.Join(lab.DefaultStateRoot, *prefix)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// `go run` removes its binary when it ends: copy it for the supervisor
	// and the pods.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	bin := filepath.Join(dir, "lab")
	if err := copyFile(self, bin); err != nil {
		return err
	}
	logPath := filepath.Join(dir, "supervisor.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	sargs := []string{"supervise", "--state-dir", dir, "--nodes", fmt.Sprint(*nodes), "--bin-dir", filepath.Join(root, "bin")}
	if *keep {
		sargs = append(sargs, "--keep")
	}
	if *barelb {
		sargs = append(sargs, "--barelb")
	}
	cmd := exec.Command(bin, sargs...)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the supervisor: %w", err)
	}
	logf.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	for {
		if s, err := readState(dir); err == nil && s.SupervisorPID != 0 {
			out, _ := json.MarshalIndent(s, "", "  ")
			fmt.Println(string(out))
			fmt.Fprintf(os.Stderr, "lab %s up in %v; supervisor log %s\n", s.Prefix, time.Since(start).Round(time.Millisecond), logPath)
			return nil
		}
		select {
		case err := <-exited:
			tail, _ := os.ReadFile(logPath)
			if !*keep {
				_ = lab.Cleanup(*prefix, lab.DefaultStateRoot)
			}
			return fmt.Errorf("the supervisor ended (%v):\n%s", err, lastLines(string(tail), 30))
		case <-sigs:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			<-exited
			if !*keep {
				_ = lab.Cleanup(*prefix, lab.DefaultStateRoot)
			}
			return errors.New("interrupted")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func supervise(args []string) error {
	fs := flag.NewFlagSet("supervise", flag.ExitOnError)
	dir := fs.String("state-dir", "", "the lab's state folder")
	nodes := fs.Int("nodes", 3, "number of nodes")
	keep := fs.Bool("keep", false, "leave what a failed up made")
	binDir := fs.String("bin-dir", "", "folder of etcd, kube-apiserver, …")
	barelb := fs.Bool("barelb", false, "run barelb's controller and speakers")
	_ = fs.Parse(args)
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer cancel()
	log := funcr.New(func(prefix, args string) {
		fmt.Fprintln(os.Stderr, time.Now().Format(time.TimeOnly), prefix, args)
	}, funcr.Options{Verbosity: 1})
	self, _ := os.Executable()
	l, err := lab.Up(ctx, lab.Options{
		Nodes: *nodes, Prefix: filepath.Base(*dir), StateRoot: filepath.Dir(*dir),
		BinDir: *binDir, LabBinary: self, KeepOnFailure: *keep, Log: log, Barelb: *barelb,
	})
	if err != nil {
		return err
	}
	defer l.Down()
	sock := filepath.Join(*dir, "control.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", sock, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/kill", func(w http.ResponseWriter, r *http.Request) {
		if err := l.Kill(r.FormValue("node"), r.FormValue("component")); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	mux.HandleFunc("/stop", func(w http.ResponseWriter, r *http.Request) {
		if err := l.Stop(r.FormValue("node"), r.FormValue("component")); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	mux.HandleFunc("/restart", func(w http.ResponseWriter, r *http.Request) {
		if err := l.Restart(r.FormValue("node"), r.FormValue("component")); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	if err := l.SetSupervisorPID(os.Getpid()); err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("signalled, tearing down")
	return nil
}

// choose finds the state folder of the lab to act on.
func choose(fs *flag.FlagSet, args []string) (string, error) {
	name := fs.String("lab", os.Getenv("BARELB_LAB"), "prefix of the lab")
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if *name != "" {
		return filepath.Join(lab.DefaultStateRoot, *name), nil
	}
	labs := allLabs()
	switch len(labs) {
	case 0:
		return "", errors.New("no lab is running")
	case 1:
		return labs[0], nil
	}
	return "", fmt.Errorf("several labs (%v): choose one with --lab or $BARELB_LAB", labs)
}

func allLabs() []string {
	entries, _ := os.ReadDir(lab.DefaultStateRoot)
	var labs []string
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), "blb") {
			labs = append(labs, filepath.Join(lab.DefaultStateRoot, e.Name()))
		}
	}
	return labs
}

func readState(dir string) (*lab.State, error) {
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return nil, err
	}
	var s lab.State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	return &s, nil
}

func status(args []string) error {
	dir, err := choose(flag.NewFlagSet("status", flag.ExitOnError), args)
	if err != nil {
		return err
	}
	s, err := readState(dir)
	if err != nil {
		return fmt.Errorf("lab in %s is not up (yet): %w", dir, err)
	}
	alive := s.SupervisorPID != 0 && syscall.Kill(s.SupervisorPID, 0) == nil
	out, _ := json.MarshalIndent(struct {
		Running bool `json:"running"`
		*lab.State
	}{alive, s}, "", "  ")
	fmt.Println(string(out))
	return nil
}

func down(args []string) error {
	fs := flag.NewFlagSet("down", flag.ExitOnError)
	all := fs.Bool("all", false, "tear down every lab")
	var dirs []string
	if len(args) > 0 && (args[0] == "--all" || args[0] == "-all") {
		_ = fs.Parse(args)
	}
	if *all {
		dirs = allLabs()
	} else {
		dir, err := choose(fs, args)
		if err != nil {
			return err
		}
		dirs = []string{dir}
	}
	var errs []error
	for _, dir := range dirs {
		start := time.Now()
		if s, err := readState(dir); err == nil && s.SupervisorPID != 0 {
			if syscall.Kill(s.SupervisorPID, syscall.SIGTERM) == nil {
				deadline := time.Now().Add(15 * time.Second)
				for time.Now().Before(deadline) && alive(s.SupervisorPID) {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}
		// Whatever the supervisor did not remove (it may have crashed).
		if err := lab.Cleanup(filepath.Base(dir), filepath.Dir(dir)); err != nil {
			errs = append(errs, err)
		}
		fmt.Fprintf(os.Stderr, "lab %s down in %v\n", filepath.Base(dir), time.Since(start).Round(time.Millisecond))
	}
	return errors.Join(errs...)
}

// alive tells a live process from a gone or zombie one.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

func execIn(args []string) error {
	fs := flag.NewFlagSet("exec", flag.ExitOnError)
	var rest []string
	for i, a := range args {
		if a == "--" {
			args, rest = args[:i], args[i+1:]
			break
		}
	}
	dir, err := choose(fs, args)
	if err != nil {
		return err
	}
	if fs.NArg() != 1 || len(rest) == 0 {
		return errors.New("usage: lab exec HOST -- CMD")
	}
	s, err := readState(dir)
	if err != nil {
		return err
	}
	h, err := s.Host(fs.Arg(0))
	if err != nil {
		return err
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.Netns}, rest...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "KUBECONFIG="+s.InternalKubeconfig)
	return cmd.Run()
}

func control(verb string, args []string) error {
	fs := flag.NewFlagSet(verb, flag.ExitOnError)
	dir, err := choose(fs, args)
	if err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("usage: lab %s NODE speaker|kube-proxy", verb)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", filepath.Join(dir, "control.sock"))
	}}}
	resp, err := hc.PostForm("http://lab/"+verb, url.Values{"node": {fs.Arg(0)}, "component": {fs.Arg(1)}})
	if err != nil {
		return fmt.Errorf("asking the supervisor: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", strings.TrimSpace(string(body)))
	}
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
