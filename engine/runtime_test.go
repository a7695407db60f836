package engine

import (
	"errors"
	"strings"
	"testing"

	"github.com/zmqmsg/zmqmsg/internal/config"
)

// The composition root that New and StartDaemon share: it binds nothing by
// itself, turns bound endpoints into the node (reporting one that does not
// parse), and its close leaves no goroutine, socket or context behind
// (goleak, and terminate's watchdog).
func TestRuntimeStartsAndClosesWhole(t *testing.T) {
	rt, err := startRuntime(config.Config{Ports: config.Ports{Call: config.AnyPort}}.WithDefaults(), true)
	if err != nil {
		t.Fatal(err)
	}
	if got := rt.bind(config.AnyPort); got != "tcp://127.0.0.1:*" {
		t.Errorf("bind(AnyPort) = %q", got)
	}
	if got := rt.bind(0); got != "" {
		t.Errorf("bind(0) = %q, want none", got)
	}
	n, err := rt.node("tcp://127.0.0.1:4001", "", "tcp://127.0.0.1:4002", "tcp://127.0.0.1:4003")
	if err != nil || n.CallPort != 4001 || n.CastPort != 0 || n.FanoutPort != 4002 || n.NotifyPort != 4003 || n.Host != "127.0.0.1" {
		t.Errorf("node = %+v, %v", n, err)
	}
	if _, err := rt.node("tcp://127.0.0.1:x", "", "", ""); err == nil || !strings.Contains(err.Error(), "bound endpoint") {
		t.Errorf("a port that does not parse: %v", err)
	}
	started := make(chan struct{})
	if !rt.routines.Go(func() { close(started); <-rt.ctx.Done() }) {
		t.Fatal("Go refused on a running runtime")
	}
	<-started
	if err := rt.setAllowed(nil); !errors.Is(err, config.ErrInvalidConfig) {
		t.Errorf("setAllowed without Security: %v", err)
	}
	if err := rt.close(); err != nil {
		t.Fatal(err)
	}
	if rt.routines.Go(func() {}) {
		t.Fatal("Go accepted after close")
	}
}
