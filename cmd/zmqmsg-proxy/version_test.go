package main

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	zmq "github.com/pebbe/zmq4"
)

// --version prints the module version (or "(devel)"), the commit (or
// "unknown"), the Go version and libzmq's, and starts nothing.
func TestVersion(t *testing.T) {
	major, minor, patch := zmq.Version()
	want := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		want = bi.Main.Version
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--call-port", "1", "--version"}, noEnv, &stdout, &stderr, nil); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, s := range []string{"zmqmsg-proxy " + want + "\n", "\ncommit ", runtime.Version(), fmt.Sprintf("libzmq %d.%d.%d", major, minor, patch)} {
		if !strings.Contains(stdout.String(), s) {
			t.Errorf("%q lacks %q", stdout.String(), s)
		}
	}
}
