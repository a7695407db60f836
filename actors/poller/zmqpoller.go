package poller

import (
	"fmt"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/internal/routine"
)

// pairSeq makes every wake-up PAIR address unique within the process.
var pairSeq atomic.Uint64

// zmqPollerWaiter sleeps in zmq_poll over the loop's sockets plus the
// receiving end of an inproc PAIR. It is the portable reference strategy.
//
// Producers do not touch the sending PAIR themselves: a waker goroutine owns
// it, so that no socket is ever used by two goroutines. A producer sets the
// coalescing flag and, if it was clear, signals the waker, which sends one
// byte. The loop clears the flag before it drains the command queue, so a
// command queued after the drain always causes a new byte.
type zmqPollerWaiter struct {
	zctx   *zmq.Context
	addr   string
	poller *zmq.Poller
	recv   *zmq.Socket // owned by the loop goroutine
	recvID int

	pending  atomic.Bool   // a wake-up byte is on its way or unread
	kick     chan struct{} // producers -> waker, capacity 1
	quit     chan struct{} // closed by close: the waker exits
	wakerUp  chan error    // the waker reports its setup result
	routines routine.Group
}

func newZMQPollerWaiter(zctx *zmq.Context) waiter {
	return &zmqPollerWaiter{
		zctx:    zctx,
		addr:    fmt.Sprintf("inproc://zmqmsg-poller-wake-%d", pairSeq.Add(1)),
		kick:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
		wakerUp: make(chan error, 1),
	}
}

func (w *zmqPollerWaiter) arm(socks []*sock) error {
	recv, err := w.zctx.NewSocket(zmq.PAIR)
	if err != nil {
		return fmt.Errorf("wake PAIR: %w", err)
	}
	w.recv = recv
	if err := recv.SetLinger(0); err != nil {
		return fmt.Errorf("wake PAIR linger: %w", err)
	}
	if err := recv.Bind(w.addr); err != nil {
		return fmt.Errorf("wake PAIR bind %s: %w", w.addr, err)
	}
	w.poller = zmq.NewPoller()
	for _, s := range socks {
		w.poller.Add(s.z, zmq.POLLIN)
	}
	w.recvID = w.poller.Add(recv, zmq.POLLIN)
	w.routines.Go(w.waker)
	return <-w.wakerUp
}

// waker owns the sending PAIR and turns kicks into wake-up bytes.
func (w *zmqPollerWaiter) waker() {
	send, err := w.zctx.NewSocket(zmq.PAIR)
	if err == nil {
		err = send.SetLinger(0)
		if err == nil {
			err = send.Connect(w.addr)
		}
	}
	w.wakerUp <- err
	if err != nil {
		if send != nil {
			_ = send.Close()
		}
		return
	}
	defer send.Close()
	one := []byte{1}
	for {
		select {
		case <-w.kick:
			// A full pipe means a byte is already waiting: nothing lost.
			_, _ = send.SendBytes(one, zmq.DONTWAIT)
		case <-w.quit:
			return
		}
	}
}

func (w *zmqPollerWaiter) wait(d time.Duration, wantIn, wantOut []bool) error {
	for i := range wantIn {
		var ev zmq.State
		if wantIn[i] {
			ev |= zmq.POLLIN
		}
		if wantOut[i] {
			ev |= zmq.POLLOUT
		}
		if _, err := w.poller.Update(i, ev); err != nil {
			return err
		}
	}
	timeout := time.Duration(-1)
	if d >= 0 {
		// zmq_poll takes whole milliseconds; pebbe truncates. Round up so a
		// sub-millisecond deadline sleeps instead of spinning.
		timeout = (d + time.Millisecond - 1).Truncate(time.Millisecond)
	}
	polled, err := w.poller.Poll(timeout)
	if err != nil {
		if zmq.AsErrno(err) == zmq.ETERM {
			return err
		}
		return nil // EINTR and friends: the loop simply runs another pass
	}
	for _, p := range polled {
		if p.Socket == w.recv {
			// Drain the bytes first, then clear the flag, and only then may
			// the loop drain the command queue. Clearing before draining the
			// bytes could swallow the byte of a producer that set the flag
			// in between, and the flag would stay set forever.
			for {
				if _, err := w.recv.RecvBytes(zmq.DONTWAIT); err != nil {
					break
				}
			}
			w.pending.Store(false)
		}
	}
	return nil
}

// readable cannot tell without zmq_poll.
func (*zmqPollerWaiter) readable([]bool) bool { return false }

func (w *zmqPollerWaiter) notify() {
	if w.pending.CompareAndSwap(false, true) {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

func (w *zmqPollerWaiter) close() {
	close(w.quit)
	w.routines.Close()
	if w.recv != nil {
		_ = w.recv.Close()
	}
}
