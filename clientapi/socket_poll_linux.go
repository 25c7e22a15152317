package clientapi

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"
)

// poller holds idle sockets without a goroutine each: an epoll instance
// on their descriptors (besides the runtime's own), and one goroutine that
// starts a socket's reader again when data arrives. This is what takes an
// idle socket from ~8.4 KiB (a parked reader goroutine: 2 KiB of stack
// and its heap share) to the few hundred bytes of its buffers. Each
// registration is one-shot, so one event starts one reader.
type poller struct {
	epfd int
	log  *slog.Logger

	// open guards epfd: parks hold it shared while they register, and the
	// poller takes it exclusively to close epfd, so no park can use the
	// number once it is closed (and maybe reused).
	open   sync.RWMutex
	closed bool

	mu   sync.Mutex
	byID map[uint64]*session
	next uint64
}

// newPoller starts the poller; nil (sockets keep a reader goroutine) if
// epoll is unavailable.
func newPoller(ctx context.Context, log *slog.Logger) *poller {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		log.Warn("no epoll: idle sockets keep a goroutine each", "err", err)
		return nil
	}
	p := &poller{epfd: epfd, log: log, byID: map[uint64]*session{}}
	go p.run(ctx)
	return p
}

// park registers s to be served again when its socket is readable. On
// true the caller (s's reader) must return at once without touching s.
func (p *poller) park(s *session) bool {
	if p == nil {
		return false
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	s.parked, s.busy = true, false
	op := syscall.EPOLL_CTL_MOD
	if s.pollID == 0 {
		op = syscall.EPOLL_CTL_ADD
		p.mu.Lock()
		p.next++
		s.pollID = p.next
		p.byID[s.pollID] = s
		p.mu.Unlock()
	}
	id := s.pollID
	s.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
		Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
	var ctlErr error = syscall.EBADF
	p.open.RLock()
	var err error
	if !p.closed {
		err = s.raw.Control(func(fd uintptr) { ctlErr = syscall.EpollCtl(p.epfd, op, int(fd), &ev) })
	}
	p.open.RUnlock()
	if err == nil && ctlErr == nil {
		return true
	}
	s.mu.Lock()
	s.parked = false
	s.mu.Unlock()
	return false
}

// forget drops a closed session (closing its descriptor has already taken
// it out of the epoll set).
func (p *poller) forget(s *session) {
	if p == nil {
		return
	}
	p.mu.Lock()
	delete(p.byID, s.pollID)
	p.mu.Unlock()
}

// run waits for events and starts the reader of each socket that has data,
// until ctx ends. It waits for the epoll descriptor in the runtime's own
// poller (an epoll descriptor is readable while it has events) and only
// then takes them without blocking: a blocking epoll_wait would hold this
// goroutine's P in the system call, and the readers just started would sit
// in that P's queue until the runtime took the P back, up to 10 ms later.
func (p *poller) run(ctx context.Context) {
	f, rc, err := pollable(p.epfd)
	defer func() {
		p.open.Lock()
		p.closed = true
		if f != nil {
			f.Close() // closes epfd
		} else {
			syscall.Close(p.epfd)
		}
		p.open.Unlock()
	}()
	if err != nil {
		p.log.Error("epoll descriptor not pollable: sockets left idle will time out", "err", err)
		return
	}
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Now()) })
	defer stop()
	events := make([]syscall.EpollEvent, 256)
	for {
		var n int
		var waitErr error
		err := rc.Read(func(fd uintptr) bool {
			n, waitErr = syscall.EpollWait(int(fd), events, 0)
			return n > 0 || (waitErr != nil && !errors.Is(waitErr, syscall.EINTR))
		})
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = waitErr
		}
		if err != nil {
			p.log.Error("epoll_wait failed: sockets left idle will time out", "err", err)
			return
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			p.mu.Lock()
			s := p.byID[id]
			p.mu.Unlock()
			if s == nil {
				continue
			}
			s.mu.Lock()
			resume := s.parked && !s.closed
			s.parked = false
			s.mu.Unlock()
			if resume {
				go s.serve()
			}
		}
	}
}

// pollable hands a descriptor to the runtime's poller: non-blocking, as an
// *os.File whose raw Read waits for readability there.
func pollable(fd int) (*os.File, syscall.RawConn, error) {
	if err := syscall.SetNonblock(fd, true); err != nil {
		return nil, nil, err
	}
	f := os.NewFile(uintptr(fd), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		return f, nil, err
	}
	return f, rc, nil
}
