package poller

/*
#cgo !windows pkg-config: libzmq
#include <zmq.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ZMQMSG_MAXF 256

// zmqmsg_rx is one socket's receive state, in C memory: the frame too
// large for the Go buffer while Go makes room for it, and the sizes of the
// frames of the message being received.
typedef struct {
	zmq_msg_t pending;
	int nframes;
	int more;
	size_t used;
	size_t need;
	size_t sizes[ZMQMSG_MAXF];
} zmqmsg_rx;

// zmqmsg_recv receives one whole message from sock in one call: every frame
// that fits is copied into buf, one after the other. resume 0 starts a
// message (DONTWAIT: -1 with EAGAIN when none is there); 1 goes on after
// zmqmsg_take. It returns 0 when the message is complete, 1 when a frame
// does not fit (it waits in rx->pending, rx->need bytes), 2 when the
// message had more than maxf frames (drained and dropped), -1 on an error
// (errno).
static int zmqmsg_recv(void *sock, zmqmsg_rx *rx, char *buf, size_t cap, int maxf, int resume) {
	if (!resume) {
		rx->nframes = 0;
		rx->used = 0;
	}
	for (;;) {
		zmq_msg_init(&rx->pending);
		int n;
		do {
			n = zmq_msg_recv(&rx->pending, sock, ZMQ_DONTWAIT);
		} while (n < 0 && errno == EINTR);
		if (n < 0) {
			int e = errno;
			zmq_msg_close(&rx->pending);
			errno = e;
			return -1;
		}
		int more = zmq_msg_more(&rx->pending);
		if (rx->nframes >= maxf || rx->nframes >= ZMQMSG_MAXF) {
			zmq_msg_close(&rx->pending);
			while (more) {
				zmq_msg_init(&rx->pending);
				do {
					n = zmq_msg_recv(&rx->pending, sock, ZMQ_DONTWAIT);
				} while (n < 0 && errno == EINTR);
				more = n >= 0 && zmq_msg_more(&rx->pending);
				zmq_msg_close(&rx->pending);
			}
			return 2;
		}
		rx->sizes[rx->nframes++] = (size_t)n;
		if (rx->used + (size_t)n > cap) {
			rx->need = (size_t)n;
			rx->more = more;
			return 1;
		}
		if (n > 0) {
			memcpy(buf + rx->used, zmq_msg_data(&rx->pending), (size_t)n);
			rx->used += (size_t)n;
		}
		zmq_msg_close(&rx->pending);
		if (!more) {
			return 0;
		}
	}
}

// zmqmsg_take copies the pending frame into dst, closes it, and returns
// whether more frames follow.
static int zmqmsg_take(zmqmsg_rx *rx, char *dst) {
	memcpy(dst, zmq_msg_data(&rx->pending), rx->need);
	zmq_msg_close(&rx->pending);
	return rx->more;
}

// zmqmsg_events returns sock's ZMQ_EVENTS, or -1 (errno).
static int zmqmsg_events(void *sock) {
	int ev = 0;
	size_t size = sizeof ev;
	int rc;
	do {
		rc = zmq_getsockopt(sock, ZMQ_EVENTS, &ev, &size);
	} while (rc < 0 && errno == EINTR);
	return rc < 0 ? -1 : ev;
}
*/
import "C"

import (
	"errors"
	"reflect"
	"syscall"
	"unsafe"

	zmq "github.com/pebbe/zmq4"
)

// The fast receive path calls libzmq directly: one cgo call receives a
// whole message into a buffer the socket reuses, and one Go allocation
// holds all its frames (pebbe's RecvBytes costs five cgo calls and two
// allocations per frame, and GetRcvmore two more allocations). It needs
// libzmq's socket pointer, which pebbe/zmq4 keeps in the unexported first
// field of Socket; socketLayoutOK checks that field's name, type and offset
// once, and TestSocketLayout fails if a new pebbe version moves it. Without
// it the loop keeps pebbe's path.

// socketLayoutOK reports whether zmq.Socket starts with `soc unsafe.Pointer`.
var socketLayoutOK = func() bool {
	t := reflect.TypeOf(zmq.Socket{})
	if t.NumField() == 0 {
		return false
	}
	f := t.Field(0)
	return f.Name == "soc" && f.Offset == 0 && f.Type == reflect.TypeOf(unsafe.Pointer(nil))
}()

// socketPtr returns libzmq's pointer of an open socket.
func socketPtr(z *zmq.Socket) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(z)) }

// recvBufSize is the buffer a socket receives into: larger frames get a
// buffer of their own.
const recvBufSize = 64 << 10

// receiver is one socket's fast receive state. Loop goroutine only.
type receiver struct {
	ptr unsafe.Pointer // libzmq's socket
	rx  *C.zmqmsg_rx   // C memory, freed by free
	buf []byte
}

func newReceiver(z *zmq.Socket) *receiver {
	rx := (*C.zmqmsg_rx)(C.calloc(1, C.size_t(unsafe.Sizeof(C.zmqmsg_rx{}))))
	return &receiver{ptr: socketPtr(z), rx: rx, buf: make([]byte, recvBufSize)}
}

func (r *receiver) free() {
	C.free(unsafe.Pointer(r.rx))
	r.rx = nil
}

// errOversized: the message had more frames than allowed (drained).
var errOversized = errors.New("poller: too many frames")

// recv receives one message without waiting: its frames, which share one
// allocation and belong to the caller; an EAGAIN zmq.Errno when there is
// none; errOversized when it was drained for having over maxFrames frames.
func (r *receiver) recv(maxFrames int) ([][]byte, error) {
	var big [][]byte // frames that did not fit in buf, by index
	resume := C.int(0)
	for {
		st, err := C.zmqmsg_recv(r.ptr, r.rx, (*C.char)(unsafe.Pointer(&r.buf[0])), C.size_t(len(r.buf)), C.int(maxFrames), resume)
		switch st {
		case -1:
			if e, ok := err.(syscall.Errno); ok {
				return nil, zmq.Errno(e)
			}
			return nil, err
		case 2:
			return nil, errOversized
		case 1:
			n := int(r.rx.nframes)
			for len(big) < n {
				big = append(big, nil)
			}
			frame := make([]byte, int(r.rx.need))
			more := C.zmqmsg_take(r.rx, (*C.char)(unsafe.Pointer(&frame[0])))
			big[n-1] = frame
			if more == 0 {
				return r.frames(big), nil
			}
			resume = 1
			continue
		}
		return r.frames(big), nil
	}
}

// frames cuts the received message into its frames: the buffered ones are
// copied out in one allocation, big ones are already the caller's.
func (r *receiver) frames(big [][]byte) [][]byte {
	n := int(r.rx.nframes)
	data := make([]byte, int(r.rx.used))
	copy(data, r.buf)
	frames := make([][]byte, n)
	off := 0
	for i := 0; i < n; i++ {
		if i < len(big) && big[i] != nil {
			frames[i] = big[i]
			continue
		}
		size := int(r.rx.sizes[i])
		frames[i] = data[off : off+size : off+size]
		off += size
	}
	return frames
}

// events returns the socket's ZMQ_EVENTS without allocating.
func (r *receiver) events() (zmq.State, error) {
	ev, err := C.zmqmsg_events(r.ptr)
	if ev < 0 {
		if e, ok := err.(syscall.Errno); ok {
			return 0, zmq.Errno(e)
		}
		return 0, err
	}
	return zmq.State(ev), nil
}
