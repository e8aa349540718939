package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"
)

// Streams are the program's standard streams.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// usageError is a mistake in the command line; Run prints the usage with it.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const usage = `kubectl barelb - barelb's kubectl plugin

Usage:
  kubectl barelb convert [-f FILE|-]... [--namespace barelb-system]
      Read MetalLB configuration (metallb.io custom resources, Lists of them,
      or the legacy ConfigMap) and print barelb's equivalent as YAML on
      stdout; what cannot be carried over is named on stderr. Without -f,
      or with -f -, read stdin.
  kubectl barelb status [-o table|json] [--namespace barelb-system]
      Each LoadBalancer Service barelb serves: its addresses, the pool they
      came from, the nodes announcing it, and its problems.
  kubectl barelb pools [-o table|json] [--namespace barelb-system]
      Each IPAddressPool: its addresses and how many are assigned and
      available per family.

  kubectl barelb drain NODE [--wait=true] [--timeout 1m]
      Planned maintenance: label the node barelb.io/drain, so that the
      layer-2 addresses it announces move to other nodes make-before-break
      (the next node announces before this one stops answering), and wait
      until no ServiceL2Status names it. An address no other node may
      announce stays on the node.
  kubectl barelb undrain NODE
      Remove the label: the node may announce again, and balanced
      placement may move its share of addresses back (make-before-break).

status, pools, drain and undrain take kubectl's connection flags: --kubeconfig, --context,
--cluster, --user, --server, --token, --request-timeout ...; KUBECONFIG is
honoured as by kubectl. --namespace is barelb's namespace, where its pools
and status objects live.

Run 'kubectl barelb COMMAND --help' for a command's flags.
`

// Run runs the plugin with args (without the program's name) and returns
// the process's exit code.
func Run(ctx context.Context, args []string, s Streams) int {
	if len(args) == 0 {
		fmt.Fprint(s.Err, usage)
		return exitUsage
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "convert":
		err = runConvert(rest, s)
	case "status":
		err = runStatus(ctx, rest, s)
	case "pools":
		err = runPools(ctx, rest, s)
	case "drain":
		err = runDrain(ctx, rest, s, true)
	case "undrain":
		err = runDrain(ctx, rest, s, false)
	case "help", "-h", "--help":
		fmt.Fprint(s.Out, usage)
		return exitOK
	default:
		err = usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, pflag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(s.Err, "error: %v\n\n%s", err, usage)
		return exitUsage
	default:
		fmt.Fprintf(s.Err, "error: %v\n", err)
		return exitError
	}
}

// command is a subcommand's flags and its one-line synopsis.
type command struct {
	name, synopsis string
	fs             *pflag.FlagSet
	out            io.Writer
}

// newCommand makes a command's flag set; --help prints the command's
// flags on stdout.
func newCommand(name, synopsis string, s Streams) *command {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard) // Run reports errors, once
	fs.Usage = func() {}
	return &command{name: name, synopsis: synopsis, fs: fs, out: s.Out}
}

// parse parses the command's flags; a command takes no arguments.
func (c *command) parse(args []string) error {
	if err := c.parseFlags(args); err != nil {
		return err
	}
	if c.fs.NArg() > 0 {
		return usageError{fmt.Sprintf("%s takes no arguments, got %s", c.name, strings.Join(c.fs.Args(), " "))}
	}
	return nil
}

// parseNode parses the flags of a command that takes one node name, and
// returns the name.
func (c *command) parseNode(args []string) (string, error) {
	if err := c.parseFlags(args); err != nil {
		return "", err
	}
	if c.fs.NArg() != 1 {
		return "", usageError{fmt.Sprintf("%s takes one node name, got %q", c.name, c.fs.Args())}
	}
	return c.fs.Arg(0), nil
}

// parseFlags parses the command's flags; --help prints them.
func (c *command) parseFlags(args []string) error {
	if err := c.fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprintf(c.out, "Usage: kubectl barelb %s\n\nFlags:\n%s", c.synopsis, c.fs.FlagUsages())
			return err
		}
		return usageError{fmt.Sprintf("%s: %v", c.name, err)}
	}
	return nil
}
