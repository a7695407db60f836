package socket_test

import (
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// rawRouter is a plain zmq ROUTER owned by one goroutine of the test: it
// binds tcp://127.0.0.1:*, reports every message it receives on in and sends
// every message queued on out. Nothing else touches the socket.
type rawRouter struct {
	endpoint string
	in       chan [][]byte
	out      chan [][]byte
	sendErrs chan error
	stop     chan struct{}
	done     chan struct{}
}

func startRouter(t testing.TB, zctx *zmq.Context) *rawRouter {
	t.Helper()
	r := &rawRouter{
		in:       make(chan [][]byte, 64),
		out:      make(chan [][]byte, 64),
		sendErrs: make(chan error, 64),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	ready := make(chan error, 1)
	go r.run(zctx, ready)
	if err := <-ready; err != nil {
		<-r.done
		t.Fatalf("raw router: %v", err)
	}
	t.Cleanup(func() {
		close(r.stop)
		<-r.done
	})
	return r
}

func (r *rawRouter) run(zctx *zmq.Context, ready chan<- error) {
	defer close(r.done)
	z, err := zctx.NewSocket(zmq.ROUTER)
	if err != nil {
		ready <- err
		return
	}
	defer z.Close()
	if err := z.SetLinger(0); err != nil {
		ready <- err
		return
	}
	if err := z.SetRouterMandatory(1); err != nil {
		ready <- err
		return
	}
	if err := z.Bind("tcp://127.0.0.1:*"); err != nil {
		ready <- err
		return
	}
	if r.endpoint, err = z.GetLastEndpoint(); err != nil {
		ready <- err
		return
	}
	ready <- nil
	p := zmq.NewPoller()
	p.Add(z, zmq.POLLIN)
	for {
		select {
		case <-r.stop:
			return
		case m := <-r.out:
			if _, err := z.SendMessage(m); err != nil {
				r.sendErrs <- err
			}
			continue
		default:
		}
		polled, err := p.Poll(5 * time.Millisecond)
		if err != nil {
			return
		}
		if len(polled) == 0 {
			continue
		}
		m, err := z.RecvMessageBytes(0)
		if err != nil {
			return
		}
		select {
		case r.in <- m:
		case <-r.stop:
			return
		}
	}
}

// next returns the next message the router received.
func (r *rawRouter) next(t testing.TB) [][]byte {
	t.Helper()
	select {
	case m := <-r.in:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("raw router received nothing")
		return nil
	}
}

// send queues a message for the router to send.
func (r *rawRouter) send(frames ...[]byte) { r.out <- frames }
