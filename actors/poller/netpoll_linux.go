//go:build linux

package poller

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const netpollSupported = true

// netpollWaiter parks the loop goroutine in Go's netpoller, with no OS
// thread and no helper goroutine in between.
//
// It builds an epoll instance of its own that watches, level-triggered:
//
//   - a duplicate of each socket's ZMQ_FD (the eventfd that libzmq writes
//     when the socket's command mailbox wakes up), and
//   - an eventfd of its own that producers write when they queue a command.
//
// The epoll descriptor itself becomes readable when any of those is, so it is
// wrapped in an os.File (which registers it with the netpoller) and the loop
// waits in RawConn.Read on it, with SetReadDeadline for the handler's timer.
// The Read callback asks epoll_wait with a zero timeout whether anything is
// ready, so it never parks while something already is (an edge that came
// before the wait is not lost), and it never reads a ZMQ_FD (that would steal
// libzmq's signal). The duplicates are never switched to blocking mode.
//
// Command wake-ups are coalesced: a producer writes the eventfd only if it
// flips the pending flag from false to true. The callback drains the eventfd
// first, then clears the flag, and only then does the loop drain the
// command queue, so a command queued after the drain always writes again.
type netpollWaiter struct {
	file  *os.File // the epoll descriptor, registered with the netpoller
	rc    syscall.RawConn
	epfd  int
	evfd  int // command eventfd; -1 until armed
	dups  []int
	ready func(fd uintptr) bool // w.check, bound once

	events      [16]unix.EpollEvent // loop goroutine only
	hasDeadline bool                // a read deadline is set

	pending atomic.Bool
	mu      sync.RWMutex // guards evfd against close while a producer writes
	closed  bool
}

func newNetpollWaiter() waiter { return &netpollWaiter{epfd: -1, evfd: -1} }

func (w *netpollWaiter) arm(socks []*sock) error {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	w.epfd = epfd
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	w.mu.Lock()
	w.evfd = evfd
	w.mu.Unlock()
	if err := w.watch(evfd); err != nil {
		return err
	}
	for _, s := range socks {
		fd, err := s.z.GetFd()
		if err != nil {
			return fmt.Errorf("ZMQ_FD of %s: %w", s.name, err)
		}
		dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("dup ZMQ_FD of %s: %w", s.name, err)
		}
		w.dups = append(w.dups, dup)
		if err := w.watch(dup); err != nil {
			return err
		}
	}
	// A non-blocking descriptor handed to os.NewFile is registered with the
	// netpoller; from now on the file owns epfd.
	if err := unix.SetNonblock(epfd, true); err != nil {
		return fmt.Errorf("epoll nonblock: %w", err)
	}
	w.file = os.NewFile(uintptr(epfd), "zmqmsg-epoll")
	w.epfd = -1
	if w.rc, err = w.file.SyscallConn(); err != nil {
		return fmt.Errorf("epoll raw conn: %w", err)
	}
	w.ready = w.check
	return nil
}

func (w *netpollWaiter) watch(fd int) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl add %d: %w", fd, err)
	}
	return nil
}

// check is the Read callback: it reports whether anything is ready now,
// consuming only the command eventfd.
func (w *netpollWaiter) check(fd uintptr) bool {
	for {
		n, err := unix.EpollWait(int(fd), w.events[:], 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return err != nil // an error: let the loop run a pass and see
		}
		for i := 0; i < n; i++ {
			if w.events[i].Fd == int32(w.evfd) {
				var buf [8]byte
				_, _ = unix.Read(w.evfd, buf[:])
				w.pending.Store(false) // after the drain, before the commands
			}
		}
		return true
	}
}

func (w *netpollWaiter) wait(d time.Duration, _, _ []bool) error {
	// The netpoller covers POLLIN and POLLOUT alike: libzmq signals its
	// descriptor for any change of the socket's state, and the loop reads
	// the actual events after waking.
	switch {
	case d >= 0:
		if err := w.file.SetReadDeadline(time.Now().Add(d)); err != nil {
			return err
		}
		w.hasDeadline = true
	case w.hasDeadline:
		if err := w.file.SetReadDeadline(time.Time{}); err != nil {
			return err
		}
		w.hasDeadline = false
	}
	err := w.rc.Read(w.ready)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	return nil
}

func (w *netpollWaiter) notify() {
	if w.pending.CompareAndSwap(false, true) {
		w.mu.RLock()
		if !w.closed && w.evfd >= 0 {
			one := [8]byte{1} // little-endian 1
			_, _ = unix.Write(w.evfd, one[:])
		}
		w.mu.RUnlock()
	}
}

func (w *netpollWaiter) close() {
	w.mu.Lock()
	w.closed = true
	if w.evfd >= 0 {
		_ = unix.Close(w.evfd)
	}
	w.mu.Unlock()
	if w.file != nil {
		_ = w.file.Close()
	}
	if w.epfd >= 0 {
		_ = unix.Close(w.epfd)
	}
	for _, fd := range w.dups {
		_ = unix.Close(fd)
	}
	w.dups = nil
}
