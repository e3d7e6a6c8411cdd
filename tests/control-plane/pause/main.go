// Command pause is the node's sandbox (infrastructure) container: it holds a pod's namespaces
// open and does nothing else. Built here, statically, because the node may pull no image: it is
// packed into an OCI archive (scripts/oci-archive.py) and imported into containerd.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		// As PID 1 of a shared process namespace it reaps orphans.
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
