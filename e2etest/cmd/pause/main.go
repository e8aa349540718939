// Command pause is the lab's pod sandbox image (what registry.k8s.io/pause
// is on a real cluster): it holds the pod's namespaces, reaps the zombies
// of a shared PID namespace and exits on SIGTERM or SIGINT. The lab builds
// it locally (`make cluster-images`) because no registry is reachable.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return
		}
		// Reap every exited child; as PID 1 nobody else will.
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
