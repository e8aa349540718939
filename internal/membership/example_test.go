package membership_test

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"

	"github.com/barelb/barelb/internal/membership"
)

// A speaker joins the other speakers, re-runs its election whenever the
// member set changes, and leaves on SIGTERM so that the others take over
// its addresses at once.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()

	m, err := membership.New(membership.Config{
		NodeName:  "node-a",
		BindAddr:  "192.0.2.10",
		SecretKey: []byte("0123456789abcdef"), // from a Secret
		Logger:    logr.Discard(),
	})
	if err != nil {
		os.Exit(1)
	}
	defer m.Shutdown()

	// All speakers' node addresses; this node's own is skipped.
	if _, err := m.Join(ctx, []string{"192.0.2.10", "192.0.2.11", "192.0.2.12"}); err != nil {
		os.Exit(1)
	}
	for {
		select {
		case <-m.Changes():
			elect(m.Members())
		case <-ctx.Done():
			_ = m.Leave(time.Second)
			return
		}
	}
}

func elect([]string) {}
