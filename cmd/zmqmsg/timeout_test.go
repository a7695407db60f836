package main

import (
	"testing"

	"github.com/zmqmsg/zmqmsg/internal/redistest"
)

// A --timeout too short for anything is a timeout (exit 3), not "no
// servers" (exit 5): the deadline passed before the CLI could know.
func TestTinyTimeout(t *testing.T) {
	for range 5 {
		r := mem(t, "--json", "call", "--timeout", "1ms", "t-tiny-nobody", "m").want(t, exitTimeout)
		if e := decode[map[string]any](t, r.stderr); e["type"] != "timeout" {
			t.Errorf("JSON error %v", e)
		}
	}
	srv := redistest.Start(t)
	cliRun(t, map[string]string{"ZMQMSG_DIRECTORY": srv.URL()}, "", "call", "--timeout", "1ms", "t-tiny-nobody", "m").want(t, exitTimeout)
}
