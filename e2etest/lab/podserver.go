package lab

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// RunHelperMode runs the lab's helper programs when os.Args asks for one
// ("podserver …") and exits; otherwise it returns. A test binary that uses
// the lab calls it first thing in TestMain, so that it can serve as the
// pods' program.
func RunHelperMode() {
	if len(os.Args) > 1 && os.Args[1] == "podserver" {
		if err := PodServer(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "podserver:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// PodServer is a pod's program: an HTTP server answering every request
// with the pod's name and a newline, on every port given.
// Flags: --name NAME --ports 80,8080 [--lab STATE_DIR].
func PodServer(args []string) error {
	fs := flag.NewFlagSet("podserver", flag.ContinueOnError)
	name := fs.String("name", "", "the pod's name")
	ports := fs.String("ports", "80", "comma-separated TCP ports")
	fs.String("lab", "", "the lab's state folder (only so that clean-up finds this process)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" {
		return errors.New("--name is required")
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Pod-Name", *name)
		_, _ = io.WriteString(w, *name+"\n")
	})
	errc := make(chan error, 1)
	for _, p := range strings.Split(*ports, ",") {
		port, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return fmt.Errorf("port %q: %w", p, err)
		}
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			return fmt.Errorf("listening: %w", err)
		}
		go func() { errc <- http.Serve(ln, handler) }()
	}
	return <-errc
}
