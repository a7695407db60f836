package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/zmqmsg/zmqmsg"
)

// A payload over the message size limit, from an argument or stdin, is bad
// input (exit 2) refused before anything is sent.
func TestTooLarge(t *testing.T) {
	// Just over 16 MiB: each pass over it is slow under -race.
	big := `"` + strings.Repeat("x", 16<<20) + `"`
	for _, args := range [][]string{
		{"call", "t-big", "m", big},
		{"notify", "t-big", "e", big},
	} {
		r := cliRun(t, nil, "", append([]string{"--directory", "memory:"}, args...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "over the message size limit") {
			t.Errorf("%s with 16 MiB: exit %d, %.200q", args[0], r.code, r.stderr)
		}
	}
	r := cliRun(t, nil, big, "--directory", "memory:", "--json", "call", "t-big", "m", "-").want(t, exitUsage)
	if e := decode[map[string]any](t, r.stderr); e["type"] != "usage" || !strings.Contains(fmt.Sprint(e["error"]), "stdin is 16777218 bytes") {
		t.Errorf("16 MiB on stdin: %v", e)
	}
	if code, kind := classify(fmt.Errorf("call: %w", zmqmsg.ErrTooLarge)); code != exitUsage || kind != "usage" {
		t.Errorf("ErrTooLarge: exit %d (%s), want 2", code, kind)
	}
}
