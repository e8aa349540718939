package layer2

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"

	"github.com/barelb/barelb/internal/testenv"
)

// benchChildEnv names the interface a re-executed test binary answers on
// as BenchmarkARPAnswers' responder.
const benchChildEnv = "BARELB_LAYER2_BENCH_CHILD"

// Benchmark settings: 10,000 addresses from the benchmarking range
// 198.18.0.0/15 (RFC 2544), requests sent for benchBlast.
const (
	benchAddresses = 10000
	benchBlast     = 3 * time.Second
)

var benchFirst = netip.MustParseAddr("198.18.0.1")

func TestMain(m *testing.M) {
	if ifname := os.Getenv(benchChildEnv); ifname != "" {
		if err := runBenchChild(ifname); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runBenchChild answers for benchAddresses addresses on ifname, says
// "ready" once their gratuitous bursts are over, and prints its answer
// count when stdin closes.
func runBenchChild(ifname string) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	r, err := NewResponder(ifi, logr.Discard(), Options{})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = r.Run(ctx) }()
	ip := benchFirst
	for range benchAddresses {
		if err := r.Announce(ip, AnnounceOptions{}); err != nil {
			return err
		}
		ip = ip.Next()
	}
	time.Sleep(2 * time.Second) // the gratuitous bursts end after 1 s
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	fmt.Printf("answers %d requests %d\n", r.Stats.ARPAnswers.Load(), r.Stats.ARPRequests.Load())
	return nil
}

// startPinned starts cmd from a thread allowed only on cpu, so that the
// child and every thread it makes stay there.
func startPinned(cmd *exec.Cmd, cpu int) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		var orig unix.CPUSet
		if err := unix.SchedGetaffinity(0, &orig); err != nil {
			errc <- fmt.Errorf("reading CPU affinity: %w", err)
			return
		}
		var one unix.CPUSet
		one.Set(cpu)
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			errc <- fmt.Errorf("pinning to CPU %d: %w", cpu, err)
			return
		}
		err := cmd.Start()
		if unix.SchedSetaffinity(0, &orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// procStatus returns fields of /proc/PID/status.
func procStatus(pid int, fields ...string) map[string]string {
	out := map[string]string{}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		for _, f := range fields {
			if ok && k == f {
				out[f] = strings.TrimSpace(v)
			}
		}
	}
	return out
}

// cpuTime is the CPU time (user and system) process pid has used.
func cpuTime(pid int) time.Duration {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command's closing parenthesis; utime and stime are
	// the 14th and 15th of the line, in clock ticks (100 per second).
	_, rest, _ := strings.Cut(string(data), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// BenchmarkARPAnswers measures how many ARP requests per second one
// speaker announcing 10,000 addresses answers on one CPU: the responder
// runs in a child process pinned to one CPU with GOMAXPROCS=1; this
// process blasts requests for random owned addresses at it from the
// other end of a veth pair for benchBlast and counts the replies. On a
// shared machine the child gets only part of its CPU, so the benchmark
// reports answers per second of the child's CPU time too (answers/cpu-s):
// what one core it had to itself would answer. Needs root:
//
//	go test -run='^$' -bench=ARPAnswers -benchtime=1x ./internal/layer2/
func BenchmarkARPAnswers(b *testing.B) {
	l := testenv.NewLink(b)
	cpu := runtime.NumCPU() - 1
	cmd := exec.Command("ip", "netns", "exec", l.Speaker, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchChildEnv+"="+l.SpeakerIf, "GOMAXPROCS=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := startPinned(cmd, cpu); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "ready" {
		b.Fatalf("child did not get ready: %q %v", lines.Text(), lines.Err())
	}
	idle := procStatus(cmd.Process.Pid, "VmRSS", "Cpus_allowed_list")

	var conn *packet.Conn
	var clientIf *net.Interface
	err = testenv.InNetns(l.Client, func() error {
		var err error
		if clientIf, err = net.InterfaceByName(l.ClientIf); err != nil {
			return err
		}
		conn, err = packet.Listen(clientIf, packet.Raw, unix.ETH_P_ARP, nil)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if raw, err := conn.SyscallConn(); err == nil {
		_ = raw.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20) })
	}

	// Requests for random owned addresses, made beforehand.
	frames := make([][]byte, 4096)
	rnd := rand.New(rand.NewSource(1))
	for i := range frames {
		target := benchFirst
		for range rnd.Intn(benchAddresses) {
			target = target.Next()
		}
		p, err := arp.NewPacket(arp.OperationRequest, clientIf.HardwareAddr, client4, ethernet.Broadcast, target)
		if err != nil {
			b.Fatal(err)
		}
		pb, _ := p.MarshalBinary()
		frames[i], _ = (&ethernet.Frame{Destination: ethernet.Broadcast, Source: clientIf.HardwareAddr, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
	}
	speaker, _ := net.ParseMAC(l.SpeakerMAC)

	var replies atomic.Uint64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 128)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					return
				}
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			if n >= 42 && buf[12] == 0x08 && buf[13] == 0x06 && buf[21] == 2 && string(buf[6:12]) == string(speaker) {
				replies.Add(1)
			}
		}
	}()
	to := &packet.Addr{HardwareAddr: ethernet.Broadcast}
	sent := 0
	b.ResetTimer()
	cpu0 := cpuTime(cmd.Process.Pid)
	start := time.Now()
	for time.Since(start) < benchBlast {
		for range 64 {
			if _, err := conn.WriteTo(frames[sent%len(frames)], to); err != nil {
				b.Fatal(err)
			}
			sent++
		}
	}
	blast := time.Since(start)
	got := replies.Load()
	childCPU := cpuTime(cmd.Process.Pid) - cpu0
	b.StopTimer()
	busy := procStatus(cmd.Process.Pid, "VmRSS", "VmHWM")
	time.Sleep(200 * time.Millisecond) // replies in flight
	_ = conn.SetReadDeadline(time.Now())
	<-done
	_ = stdin.Close()
	var childCount string
	if lines.Scan() {
		childCount = lines.Text()
	}
	perSec := float64(got) / blast.Seconds()
	b.ReportMetric(perSec, "answers/s")
	if childCPU > 0 {
		b.ReportMetric(float64(got)/childCPU.Seconds(), "answers/cpu-s")
	}
	b.ReportMetric(float64(sent)/blast.Seconds(), "requests/s")
	if kb, err := strconv.Atoi(strings.TrimSuffix(busy["VmRSS"], " kB")); err == nil {
		b.ReportMetric(float64(kb)/1024, "child-VmRSS-MiB")
	}
	b.Logf("%d addresses, child on CPU %s with GOMAXPROCS=1: sent %d requests in %v (%.0f/s), %d replies in the blast (%.0f answers/s), %d in all; child used %v of CPU in the blast (%.0f%% of one core; %.0f answers per CPU-second); child: %s; VmRSS %s idle, %s after the blast (VmHWM %s); load average %s",
		benchAddresses, idle["Cpus_allowed_list"], sent, blast.Round(time.Millisecond), float64(sent)/blast.Seconds(), got, perSec, replies.Load(),
		childCPU, 100*childCPU.Seconds()/blast.Seconds(), float64(got)/childCPU.Seconds(), childCount, idle["VmRSS"], busy["VmRSS"], busy["VmHWM"], loadAverage())
}

func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(data))[:3], " ")
}
