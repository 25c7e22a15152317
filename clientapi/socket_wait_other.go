//go:build !unix

package clientapi

import (
	"net"
	"syscall"
)

// Without a portable way to peek at a descriptor, the session waits inside
// ReadMessage.
func rawConn(net.Conn) syscall.RawConn { return nil }

func waitReadable(syscall.RawConn) error { return nil }

func readable(syscall.RawConn) bool { return true }
