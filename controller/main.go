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
