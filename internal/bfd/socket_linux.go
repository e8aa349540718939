package bfd

import "golang.org/x/sys/unix"

// bindToDevice makes the socket fd send and receive on the interface
// ifName alone (SO_BINDTODEVICE), so that a session on a link-local
// address uses the link it belongs to.
func bindToDevice(fd int, ifName string) error {
	return unix.BindToDevice(fd, ifName)
}
