package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	zmq "github.com/pebbe/zmq4"
)

// --version and version print the module version (or "(devel)"), the
// commit (or "unknown"), the Go version and libzmq's.
func TestVersion(t *testing.T) {
	major, minor, patch := zmq.Version()
	libzmq := fmt.Sprintf("libzmq %d.%d.%d", major, minor, patch)
	want := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		want = bi.Main.Version
	}
	for _, args := range [][]string{{"--version"}, {"version"}} {
		r := cliRun(t, nil, "", args...).want(t, 0)
		for _, s := range []string{"zmqmsg " + want + "\n", "\ncommit ", runtime.Version(), libzmq} {
			if !strings.Contains(r.stdout, s) {
				t.Errorf("%v: %q lacks %q", args, r.stdout, s)
			}
		}
	}
	v := decode[buildVersion](t, cliRun(t, nil, "", "--json", "version").want(t, 0).stdout)
	if v.Version != want || v.Commit == "" || v.Go != runtime.Version() || "libzmq "+v.Libzmq != libzmq {
		t.Errorf("version --json: %+v", v)
	}
}
