package clientapi

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"syscall"
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
	s.parked = true
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
// until ctx ends.
func (p *poller) run(ctx context.Context) {
	defer func() {
		p.open.Lock()
		p.closed = true
		syscall.Close(p.epfd)
		p.open.Unlock()
	}()
	events := make([]syscall.EpollEvent, 256)
	for ctx.Err() == nil {
		// A timeout, so that ctx is seen: a close does not wake epoll_wait.
		n, err := syscall.EpollWait(p.epfd, events, 250)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
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
