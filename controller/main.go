// Command controller is barelb's cluster-wide controller: it allocates
// addresses from IPAddressPools to LoadBalancer Services. It runs as a
// Deployment; with --leader-elect (the default) one replica leads and the
// others stand by.
package main

import (
	"os"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/barelb/barelb/internal/app"
)

// version is set at link time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	ctx := ctrl.SetupSignalHandler() // SIGTERM or SIGINT stops the manager
	err := app.RunController(ctx, app.Invocation{Args: os.Args[1:], Version: version})
	os.Exit(app.Exit(os.Stderr, "controller", err))
}
