package bfd

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/barelb/barelb/internal/testutil"
)

// TestSessionTranscripts runs the scripts of testdata/session/*.txt
// against a Session, as etcd's raft does with its interaction tests: a
// script is a story of events (packets from the peer, timer ticks, profile
// changes) told at times after t0, and after each the session's answer
// (what it sends, how its state changes, where it stands). The file holds
// the expected answers; the test fails on a difference and -update
// rewrites them (review the diff).
//
// A block is optional "#" comment lines, one command, "----", and the
// answer up to a blank line. Commands (times are offsets from t0):
//
//	new [rx=D] [tx=D] [mult=N] [passive]   a fresh session (our discriminator 4369)
//	recv +D STATE [your=N|ours] [rx=D] [tx=D] [mult=N] [diag=N] [poll] [final]
//	                                       a packet from the peer (discriminator 8738)
//	tick +D                                the timers at that time
//	profile +D [rx=D] [tx=D] [mult=N]      SetProfile
//	admin-down +D, enable +D               AdminDown, Enable
func TestSessionTranscripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "session", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no transcripts in testdata/session")
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			script, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			testutil.Golden(t, path, []byte(runTranscript(t, string(script))))
		})
	}
}

// runTranscript runs script and returns it with the session's answers in
// place of the expected ones.
func runTranscript(t *testing.T, script string) string {
	var out strings.Builder
	var s *Session
	lines := strings.Split(strings.TrimRight(script, "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if line == "" || strings.HasPrefix(line, "#") {
			out.WriteString(line + "\n")
			continue
		}
		// A command: skip its old answer (from "----" to a blank line).
		if i+1 < len(lines) && lines[i+1] == "----" {
			i++
			for i+1 < len(lines) && lines[i+1] != "" {
				i++
			}
		}
		out.WriteString(line + "\n----\n")
		answer, err := runCommand(&s, line)
		if err != nil {
			t.Fatalf("line %d %q: %v", i+1, line, err)
		}
		out.WriteString(answer)
	}
	return out.String()
}

// runCommand runs one command line on *s and returns its answer, ending
// in the session's standing.
func runCommand(s **Session, line string) (string, error) {
	f := strings.Fields(line)
	args := map[string]string{}
	var words []string
	for _, a := range f[1:] {
		if k, v, ok := strings.Cut(a, "="); ok {
			args[k] = v
		} else {
			words = append(words, a)
		}
	}
	var now time.Time
	if len(words) > 0 && strings.HasPrefix(words[0], "+") {
		d, err := time.ParseDuration(words[0][1:])
		if err != nil {
			return "", err
		}
		now, words = t0.Add(d), words[1:]
	}
	if f[0] != "new" && *s == nil {
		return "", fmt.Errorf("no session yet: start with new")
	}
	var st Step
	switch f[0] {
	case "new":
		p := Profile{ReceiveInterval: 300 * time.Millisecond, TransmitInterval: 300 * time.Millisecond, DetectMultiplier: 3,
			Passive: len(words) > 0 && words[0] == "passive"}
		if err := profileArgs(&p, args); err != nil {
			return "", err
		}
		var err error
		if *s, err = NewSession(t0, p, ourDiscr, rand.New(rand.NewPCG(1, 2))); err != nil {
			return "", err
		}
		return standing(*s), nil
	case "recv":
		if len(words) == 0 {
			return "", fmt.Errorf("recv: want the peer's state")
		}
		p := from(StateDown, 0)
		switch words[0] {
		case "Down":
		case "Init":
			p.State = StateInit
		case "Up":
			p.State = StateUp
		case "AdminDown":
			p.State = StateAdminDown
		default:
			return "", fmt.Errorf("recv: unknown state %q", words[0])
		}
		if err := packetArgs(&p, args, f); err != nil {
			return "", err
		}
		var err error
		if st, err = (*s).Receive(now, p); err != nil {
			return fmt.Sprintf("error: %v\n", err) + standing(*s), nil
		}
	case "tick":
		st = (*s).Tick(now)
	case "profile":
		p := (*s).profile
		if err := profileArgs(&p, args); err != nil {
			return "", err
		}
		if err := (*s).SetProfile(now, p); err != nil {
			return fmt.Sprintf("error: %v\n", err) + standing(*s), nil
		}
	case "admin-down":
		st = (*s).AdminDown(now)
	case "enable":
		st = (*s).Enable(now)
	default:
		return "", fmt.Errorf("unknown command %q", f[0])
	}
	return step(st) + standing(*s), nil
}

func profileArgs(p *Profile, args map[string]string) error {
	for k, v := range args {
		var err error
		switch k {
		case "rx":
			p.ReceiveInterval, err = time.ParseDuration(v)
		case "tx":
			p.TransmitInterval, err = time.ParseDuration(v)
		case "mult":
			var n uint64
			n, err = strconv.ParseUint(v, 10, 8)
			p.DetectMultiplier = uint8(n)
		default:
			err = fmt.Errorf("unknown argument %s", k)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func packetArgs(p *Packet, args map[string]string, f []string) error {
	for k, v := range args {
		var err error
		var n uint64
		switch k {
		case "your":
			if v == "ours" {
				p.YourDiscriminator = ourDiscr
				continue
			}
			n, err = strconv.ParseUint(v, 10, 32)
			p.YourDiscriminator = uint32(n)
		case "rx":
			p.RequiredMinRxInterval, err = time.ParseDuration(v)
		case "tx":
			p.DesiredMinTxInterval, err = time.ParseDuration(v)
		case "mult":
			n, err = strconv.ParseUint(v, 10, 8)
			p.DetectMult = uint8(n)
		case "diag":
			n, err = strconv.ParseUint(v, 10, 5)
			p.Diag = Diag(n)
		default:
			err = fmt.Errorf("unknown argument %s", k)
		}
		if err != nil {
			return err
		}
	}
	for _, w := range f {
		p.Poll = p.Poll || w == "poll"
		p.Final = p.Final || w == "final"
	}
	return nil
}

// step renders what a Step asks for: a transition, a packet to send.
func step(st Step) string {
	var b strings.Builder
	if tr := st.Transition; tr != nil {
		fmt.Fprintf(&b, "transition %s -> %s, diag %s, remote %s/%s, peer failed %v\n",
			tr.From, tr.To, tr.Diag, tr.RemoteState, tr.RemoteDiag, tr.PeerFailed())
	}
	if st.Send {
		p := st.Packet
		var bits string
		if p.Poll {
			bits += " poll"
		}
		if p.Final {
			bits += " final"
		}
		fmt.Fprintf(&b, "send %s diag %s your %d tx %v rx %v mult %d%s\n",
			p.State, p.Diag, p.YourDiscriminator, p.DesiredMinTxInterval, p.RequiredMinRxInterval, p.DetectMult, bits)
	}
	return b.String()
}

// standing renders where a session stands: state, timers, the next
// periodic packet and the detection deadline, as offsets from t0.
func standing(s *Session) string {
	in := s.Info()
	at := func(t time.Time) string {
		if t.IsZero() {
			return "none"
		}
		return "+" + t.Sub(t0).String()
	}
	polling := ""
	if in.Polling {
		polling = ", polling"
	}
	return fmt.Sprintf("now %s (diag %s), tx %v, detection %v%s; next packet %s, detection deadline %s\n",
		in.State, in.Diag, in.TxInterval, in.DetectionTime, polling, at(in.NextTransmit), at(in.DetectionDeadline))
}
