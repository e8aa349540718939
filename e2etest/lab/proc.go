package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// proc is a process the lab started inside one of its namespaces.
type proc struct {
	key  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startProc starts name with args in namespace ns, its output going to
// STATE_DIR/logs/KEY.log.
func (l *Lab) startProc(key, ns, name string, args ...string) (*proc, error) {
	return l.startProcEnv(key, ns, nil, name, args...)
}

// startProcEnv is startProc with extra environment variables (KEY=VALUE)
// added to the lab's own environment.
func (l *Lab) startProcEnv(key, ns string, env []string, name string, args ...string) (*proc, error) {
	return l.startCmd(key, nsCommand(context.Background(), ns, name, args...), env)
}

// startNetProc is startProc for programs that must share the machine's
// mount namespace (containerd and the kubelet: see node.go): it joins
// only the network namespace, where `ip netns exec` also makes a private
// mount namespace.
func (l *Lab) startNetProc(key, ns, name string, args ...string) (*proc, error) {
	cmd := exec.Command("nsenter", append([]string{"--net=" + filepath.Join("/run/netns", ns), "--", name}, args...)...)
	return l.startCmd(key, cmd, nil)
}

func (l *Lab) startCmd(key string, cmd *exec.Cmd, env []string) (*proc, error) {
	logPath := filepath.Join(l.state.StateDir, "logs", strings.ReplaceAll(key, "/", "_")+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the log of %s: %w", key, err)
	}
	defer logf.Close()
	cmd.Stdout = logf
	cmd.Stderr = logf
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", key, err)
	}
	p := &proc{key: key, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	l.mu.Lock()
	if old := l.procs[key]; old != nil {
		l.mu.Unlock()
		old.stop(2 * time.Second)
		l.mu.Lock()
	}
	l.procs[key] = p
	l.mu.Unlock()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and, after grace, SIGKILL; grace 0 kills at once.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	sig := syscall.SIGTERM
	if grace == 0 {
		sig = syscall.SIGKILL
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// kill sends SIGKILL to the process with this key.
func (l *Lab) kill(key string) error {
	l.mu.Lock()
	p := l.procs[key]
	l.mu.Unlock()
	if p == nil || p.exited() {
		return fmt.Errorf("%s is not running", key)
	}
	p.stop(0)
	return nil
}

// waitFor polls cond until it returns true, an error, or timeout.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("waiting for %s: %w (last error: %v)", what, ctx.Err(), last)
			}
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// errExited reports a process that ended while the lab waited for it.
func (p *proc) errExited() error {
	if !p.exited() {
		return nil
	}
	return errors.Join(fmt.Errorf("%s exited", p.key), p.err)
}

// FreezeAPIServer stops the kube-apiserver (SIGSTOP), as a hung or
// overloaded one: connections stay open and nothing answers. ThawAPIServer
// lets it go on (SIGCONT).
func (l *Lab) FreezeAPIServer() error { return l.signal("kube-apiserver", syscall.SIGSTOP) }

// ThawAPIServer: see FreezeAPIServer.
func (l *Lab) ThawAPIServer() error { return l.signal("kube-apiserver", syscall.SIGCONT) }

func (l *Lab) signal(key string, sig syscall.Signal) error {
	l.mu.Lock()
	p := l.procs[key]
	l.mu.Unlock()
	if p == nil || p.exited() {
		return fmt.Errorf("%s is not running", key)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signalling %s: %w", key, err)
	}
	return nil
}

// StartProcess runs a program the lab does not know (another
// implementation's controller or speaker, e2etest/compare) in a host's
// namespace ("cp", "client", a node…) with extra environment variables
// (KEY=VALUE), its output going to STATE_DIR/logs/KEY.log. The lab stops it
// on Down like its own processes; a running process of the same key is
// stopped first. key must not be one of the lab's own (NODE/speaker,
// NODE/kube-proxy, controller, kube-apiserver…): prefix it with the
// program's name.
func (l *Lab) StartProcess(key, host string, env []string, path string, args ...string) error {
	h, err := l.state.Host(host)
	if err != nil {
		return err
	}
	_, err = l.startProcEnv(key, h.Netns, env, path, args...)
	return err
}

// KillProcess sends SIGKILL to a process StartProcess started.
func (l *Lab) KillProcess(key string) error { return l.kill(key) }

// StopProcess stops a process StartProcess started: SIGTERM, SIGKILL after
// grace; it returns when the process is gone.
func (l *Lab) StopProcess(key string, grace time.Duration) error {
	l.mu.Lock()
	p := l.procs[key]
	l.mu.Unlock()
	if p == nil || p.exited() {
		return fmt.Errorf("%s is not running", key)
	}
	p.stop(grace)
	return nil
}

// ProcessPID returns the process id of a running process of the lab, by
// key (see StartProcess; the lab's own: "controller", "NODE/speaker").
func (l *Lab) ProcessPID(key string) (int, error) {
	l.mu.Lock()
	p := l.procs[key]
	l.mu.Unlock()
	if p == nil || p.exited() {
		return 0, fmt.Errorf("%s is not running", key)
	}
	return p.cmd.Process.Pid, nil
}

// ProcessExited reports whether a process of the lab has ended, with its
// error and log path, or nil while it runs.
func (l *Lab) ProcessExited(key string) error {
	l.mu.Lock()
	p := l.procs[key]
	l.mu.Unlock()
	if p == nil {
		return fmt.Errorf("%s was never started", key)
	}
	if err := p.errExited(); err != nil {
		return fmt.Errorf("%w (see %s)", err, l.logPath(logKey(key)))
	}
	return nil
}
