//go:build linux

package poller

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const netpollSupported = true

// netpollWaiter sleeps in a Go select over {command signal, socket ready,
// timer, stop}. Each socket's ZMQ_FD (an eventfd that libzmq writes when the
// socket's command mailbox wakes up) is duplicated and handed to Go's
// netpoller; a watcher goroutine per socket parks in RawConn.Read until the
// descriptor is readable and then signals ready.
//
// The descriptor is never read here (that would steal libzmq's signal), only
// polled with a zero timeout, and the duplicate is never switched to blocking
// mode. Closing the duplicate releases its watcher.
type netpollWaiter struct {
	stop    <-chan struct{}
	signal  chan struct{} // coalesced "a command was queued", capacity 1
	ready   chan struct{} // coalesced "a socket may have events", capacity 1
	watches []*fdWatch
	timer   *time.Timer
	wg      sync.WaitGroup
}

// fdWatch is one socket's descriptor watch.
type fdWatch struct {
	f     *os.File
	rc    syscall.RawConn
	armCh chan struct{} // the loop asks the watcher to wait once more
	armed atomic.Bool   // set by the loop when it arms, cleared by the watcher when it fires
}

func newNetpollWaiter(stop <-chan struct{}) waiter {
	return &netpollWaiter{
		stop:   stop,
		signal: make(chan struct{}, 1),
		ready:  make(chan struct{}, 1),
	}
}

func (w *netpollWaiter) arm(socks []*sock) error {
	for _, s := range socks {
		fd, err := s.z.GetFd()
		if err != nil {
			return fmt.Errorf("ZMQ_FD of %s: %w", s.name, err)
		}
		dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("dup ZMQ_FD of %s: %w", s.name, err)
		}
		// libzmq's descriptor is non-blocking, and so is the duplicate (the
		// flag belongs to the shared file description): os.NewFile registers
		// it with the netpoller.
		f := os.NewFile(uintptr(dup), s.name+"-zmqfd")
		rc, err := f.SyscallConn()
		if err != nil {
			_ = f.Close()
			return fmt.Errorf("raw conn of %s: %w", s.name, err)
		}
		fw := &fdWatch{f: f, rc: rc, armCh: make(chan struct{}, 1)}
		w.watches = append(w.watches, fw)
		w.wg.Add(1)
		go w.watch(fw)
	}
	return nil
}

// watch is a socket's watcher goroutine. It never calls zmq.
func (w *netpollWaiter) watch(fw *fdWatch) {
	defer w.wg.Done()
	for range fw.armCh {
		// The callback reports readiness without consuming it. Checking
		// before parking catches an edge that arrived before the wait began.
		err := fw.rc.Read(func(fd uintptr) bool { return pollIn(int(fd)) })
		if err != nil {
			return // the duplicate was closed: the loop is stopping
		}
		fw.armed.Store(false)
		select {
		case w.ready <- struct{}{}:
		default:
		}
	}
}

// pollIn reports whether fd is readable now, without blocking or reading.
func pollIn(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0 && fds[0].Revents != 0
	}
}

func (w *netpollWaiter) wait(d time.Duration, _, _ []bool) error {
	// The netpoller wait covers POLLIN and POLLOUT alike: libzmq signals the
	// descriptor for any change of the socket's state, and the loop reads
	// the actual events with GetEvents after waking.
	for _, fw := range w.watches {
		if !fw.armed.Load() {
			fw.armed.Store(true)
			fw.armCh <- struct{}{}
		}
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
	case <-w.stop:
	}
	if w.timer != nil {
		w.timer.Stop()
	}
	return nil
}

func (w *netpollWaiter) notify() {
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

func (w *netpollWaiter) close() {
	for _, fw := range w.watches {
		close(fw.armCh)
		_ = fw.f.Close()
	}
	w.wg.Wait()
	w.watches = nil
	if w.timer != nil {
		w.timer.Stop()
	}
}
