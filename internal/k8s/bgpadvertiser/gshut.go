package bgpadvertiser

import (
	"context"
	"time"

	"github.com/go-logr/logr"
)

// DefaultGracefulShutdown is how long a stopping speaker advertises its
// routes with the GRACEFUL_SHUTDOWN community before it closes its
// sessions, unless told otherwise: long enough for routers a few hops
// away to choose other paths, short against a DaemonSet's grace period.
const DefaultGracefulShutdown = 10 * time.Second

// gracefulSpeaker is what graceful shutdown needs of the speaker.
type gracefulSpeaker interface {
	SetGracefulShutdown(ctx context.Context, on bool) (int, error)
}

// startGracefulShutdown begins RFC 8326's graceful shutdown of a stopping
// speaker: every route is advertised again with the GRACEFUL_SHUTDOWN
// community (and LOCAL_PREF 0 to iBGP peers), so that the routers move
// their traffic to other nodes while this one still forwards it; the
// sessions close (withdrawing the routes) once the returned channel is
// closed, wait later. With wait 0, or no established session carrying
// routes, there is nothing to wait for and the channel is closed at once.
func startGracefulShutdown(log logr.Logger, sp gracefulSpeaker, wait time.Duration, timeout time.Duration) <-chan struct{} {
	done := make(chan struct{})
	if wait <= 0 {
		close(done)
		return done
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	n, err := sp.SetGracefulShutdown(ctx, true)
	if err != nil {
		log.Error(err, "graceful shutdown: advertising the routes with the GRACEFUL_SHUTDOWN community")
	}
	if n == 0 {
		close(done)
		return done
	}
	log.Info("graceful shutdown (RFC 8326): routes advertised with the GRACEFUL_SHUTDOWN community; the sessions close after the wait",
		"sessions", n, "wait", wait.String())
	go func() {
		time.Sleep(wait)
		close(done)
	}()
	return done
}
