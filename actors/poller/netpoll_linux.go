//go:build linux

package poller

import (
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zmqmsg/zmqmsg/internal/routine"
)

const netpollSupported = true

// netpollWaiter parks the loop goroutine in a Go select over
//
//	{command signal, sockets ready, timer}
//
// so that no OS thread is parked per loop.
//
// Sockets: the loop's epoll instance watches, level-triggered, a duplicate
// of each socket's ZMQ_FD (the eventfd that libzmq writes when the socket's
// command mailbox wakes up). The epoll descriptor is itself readable when any
// of them is, so it is wrapped in an os.File, which registers it with Go's
// netpoller, and one watcher goroutine per loop parks in RawConn.Read on it.
// The Read callback asks epoll_wait with a zero timeout whether anything is
// ready, so the watcher never parks while something already is (an edge that
// came before the wait is not lost). A ZMQ_FD is never read (that would steal
// libzmq's signal) and never switched to blocking mode.
//
// Commands: producers signal a Go channel (coalesced, capacity 1). We tried
// waking the loop through an eventfd in the same epoll instead, which saves
// the watcher hop on socket events; but then every in-process hand-off goes
// through the netpoller, which gives the loop to whichever thread is blocked
// in epoll_wait: usually the other, halted vCPU. A sequential call went from
// 77 µs with GOMAXPROCS=1 to 192 µs with 2. A channel send readies the loop
// on the producer's own P, which runs it as soon as the producer blocks.
//
// The watcher is armed by the loop only when the loop is about to sleep and
// the watcher is not already waiting, and it disarms itself when it fires,
// so a readable descriptor that the loop has not serviced yet never makes it
// spin.
type netpollWaiter struct {
	signal chan struct{} // a command was queued; capacity 1
	ready  chan struct{} // a socket may have events; capacity 1
	armCh  chan struct{} // the loop asks the watcher to wait once more
	armed  atomic.Bool   // set by the loop when it arms, cleared by the watcher when it fires
	timer  *time.Timer   // loop goroutine only

	file     *os.File // the epoll descriptor, registered with the netpoller
	rc       syscall.RawConn
	epfd     int                 // until file owns it
	epRaw    int                 // the epoll descriptor, for readable (file owns it)
	polled   [16]unix.EpollEvent // readable's buffer, loop goroutine only
	dups     []int
	events   [16]unix.EpollEvent // watcher goroutine only
	routines routine.Group
}

func newNetpollWaiter() waiter {
	return &netpollWaiter{
		signal: make(chan struct{}, 1),
		ready:  make(chan struct{}, 1),
		armCh:  make(chan struct{}, 1),
		epfd:   -1,
	}
}

func (w *netpollWaiter) arm(socks []*sock) error {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	w.epfd = epfd
	for i, s := range socks {
		fd, err := s.z.GetFd()
		if err != nil {
			return fmt.Errorf("ZMQ_FD of %s: %w", s.name, err)
		}
		dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("dup ZMQ_FD of %s: %w", s.name, err)
		}
		w.dups = append(w.dups, dup)
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)} // Fd carries the socket's index
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, dup, &ev); err != nil {
			return fmt.Errorf("epoll_ctl add ZMQ_FD of %s: %w", s.name, err)
		}
	}
	// A non-blocking descriptor handed to os.NewFile is registered with the
	// netpoller; from now on the file owns epfd.
	if err := unix.SetNonblock(epfd, true); err != nil {
		return fmt.Errorf("epoll nonblock: %w", err)
	}
	w.file = os.NewFile(uintptr(epfd), "zmqmsg-epoll")
	w.epRaw, w.epfd = epfd, -1
	if w.rc, err = w.file.SyscallConn(); err != nil {
		return fmt.Errorf("epoll raw conn: %w", err)
	}
	w.routines.Go(w.watch)
	return nil
}

// watch is the loop's watcher goroutine. It never calls zmq.
func (w *netpollWaiter) watch() {
	check := func(fd uintptr) bool {
		for {
			n, err := unix.EpollWait(int(fd), w.events[:], 0)
			if err == unix.EINTR {
				continue
			}
			// An error other than EINTR: report "ready" and let the loop's
			// zmq calls surface whatever is wrong.
			return err != nil || n > 0
		}
	}
	for range w.armCh {
		if err := w.rc.Read(check); err != nil {
			return // the epoll file was closed: the loop is stopping
		}
		w.armed.Store(false)
		select {
		case w.ready <- struct{}{}:
		default:
		}
	}
}

func (w *netpollWaiter) wait(d time.Duration, _, _ []bool) error {
	// One wait covers POLLIN and POLLOUT alike: libzmq signals its
	// descriptor for any change of the socket's state, and the loop reads
	// the actual events after waking.
	if !w.armed.Load() {
		w.armed.Store(true)
		w.armCh <- struct{}{}
	}
	var timeout <-chan time.Time
	if d >= 0 {
		if w.timer == nil {
			w.timer = time.NewTimer(d)
		} else {
			w.timer.Reset(d)
		}
		timeout = w.timer.C
	}
	select {
	case <-w.signal:
	case <-w.ready:
	case <-timeout:
	}
	if w.timer != nil {
		w.timer.Stop()
	}
	return nil
}

// readable asks the loop's epoll instance, without waiting, which sockets'
// descriptors are readable: one system call, where asking each socket
// costs libzmq a poll and a getpid each.
func (w *netpollWaiter) readable(ready []bool) bool {
	for {
		n, err := unix.EpollWait(w.epRaw, w.polled[:], 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == len(w.polled) {
			return false // cannot tell (or more than fit)
		}
		for _, ev := range w.polled[:n] {
			if i := int(ev.Fd); i < len(ready) {
				ready[i] = true
			}
		}
		return true
	}
}

func (w *netpollWaiter) notify() {
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

func (w *netpollWaiter) close() {
	close(w.armCh)
	if w.file != nil {
		_ = w.file.Close() // releases a watcher parked in Read
	}
	w.routines.Close()
	if w.epfd >= 0 {
		_ = unix.Close(w.epfd)
	}
	for _, fd := range w.dups {
		_ = unix.Close(fd)
	}
	w.dups = nil
	if w.timer != nil {
		w.timer.Stop()
	}
}
