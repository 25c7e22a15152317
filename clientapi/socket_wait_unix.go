//go:build unix

package clientapi

import (
	"net"
	"syscall"
)

// rawConn is the socket's descriptor, or nil when it has none of its own
// to wait on (TLS keeps decrypted bytes the descriptor does not show).
func rawConn(c net.Conn) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// waitReadable blocks until the socket has a byte to read (or an error or
// end of stream to report), honouring its read deadline. It peeks: the
// runtime's readiness signal alone may be stale, the kernel's buffer is not.
func waitReadable(raw syscall.RawConn) error {
	var b [1]byte
	return raw.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err != syscall.EAGAIN && err != syscall.EINTR
	})
}

// readable reports, without waiting, whether a read would return at once:
// a byte is there, or an end of stream or error is.
func readable(raw syscall.RawConn) bool {
	var b [1]byte
	ready := true
	err := raw.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ready = err != syscall.EAGAIN && err != syscall.EINTR
		return true // never wait here
	})
	return ready || err != nil
}
