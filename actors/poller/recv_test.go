package poller

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// The fast receive path reads libzmq's socket pointer out of pebbe's
// Socket: a pebbe version that moves it must fail here, loudly.
func TestSocketLayout(t *testing.T) {
	if !socketLayoutOK {
		t.Fatal("pebbe/zmq4's Socket no longer starts with `soc unsafe.Pointer`: the fast receive path is off; update recv.go for the new layout")
	}
}

// One cgo call per message: small frames, empty frames and frames larger
// than the buffer come out whole and in order, each message's frames are
// the caller's (the buffer is reused), a message over the frame limit is
// drained and reported, and an empty socket says EAGAIN.
func TestReceiverWholeMessages(t *testing.T) {
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	defer zctx.Term()
	in, out := pair(t, zctx)
	defer in.Close()
	defer out.Close()
	r := newReceiver(in)
	defer r.free()

	big := bytes.Repeat([]byte("b"), recvBufSize+123)
	huge := bytes.Repeat([]byte("h"), 3*recvBufSize)
	msgs := [][][]byte{
		{[]byte("id"), {}, []byte("body")},
		{[]byte("one")},
		{[]byte("a"), big, []byte("z")},
		{huge},
		{{}, {}},
		{big, big, []byte("tail")},
	}
	for _, m := range msgs {
		if _, err := out.SendMessage(toAny(m)...); err != nil {
			t.Fatal(err)
		}
	}
	var got [][][]byte
	for range msgs {
		frames, err := waitRecv(r, 64)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, frames)
	}
	for i, m := range msgs {
		if fmt.Sprint(got[i]) != fmt.Sprint(m) {
			t.Errorf("message %d: got %d frames %.40q, want %.40q", i, len(got[i]), got[i], m)
		}
	}
	if _, err := r.recv(64); !errors.Is(err, zmq.Errno(syscall.EAGAIN)) {
		t.Fatalf("empty socket: %v, want EAGAIN", err)
	}
	many := make([][]byte, 70)
	for i := range many {
		many[i] = []byte{byte(i)}
	}
	if _, err := out.SendMessage(toAny(many)...); err != nil {
		t.Fatal(err)
	}
	if _, err := out.SendMessage("after"); err != nil {
		t.Fatal(err)
	}
	if _, err := waitRecv(r, 64); !errors.Is(err, errOversized) {
		t.Fatalf("70 frames: %v, want errOversized", err)
	}
	frames, err := waitRecv(r, 64)
	if err != nil || len(frames) != 1 || string(frames[0]) != "after" {
		t.Fatalf("after the drained message: %q, %v", frames, err)
	}
	ev, err := r.events()
	if err != nil || ev&zmq.POLLIN != 0 {
		t.Fatalf("events: %v, %v; want no POLLIN", ev, err)
	}
}

// waitRecv receives the next message, asking again (yielding) while the
// inproc pipe has not delivered it yet, for at most 5 s.
func waitRecv(r *receiver, max int) ([][]byte, error) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		frames, err := r.recv(max)
		if !errors.Is(err, zmq.Errno(syscall.EAGAIN)) {
			return frames, err
		}
		runtime.Gosched()
	}
	return nil, errors.New("nothing arrived within 5 s")
}

func pair(t *testing.T, zctx *zmq.Context) (in, out *zmq.Socket) {
	t.Helper()
	in, err := zctx.NewSocket(zmq.PAIR)
	if err != nil {
		t.Fatal(err)
	}
	out, err = zctx.NewSocket(zmq.PAIR)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*zmq.Socket{in, out} {
		if err := s.SetLinger(0); err != nil {
			t.Fatal(err)
		}
	}
	ep := fmt.Sprintf("inproc://recv-test-%p", t)
	if err := in.Bind(ep); err != nil {
		t.Fatal(err)
	}
	if err := out.Connect(ep); err != nil {
		t.Fatal(err)
	}
	return in, out
}

func toAny(frames [][]byte) []any {
	out := make([]any, len(frames))
	for i, f := range frames {
		out[i] = f
	}
	return out
}
