package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// A taken port is named in the error, with its flag, whichever port it is:
// not the call port when another port of the call pipeline failed.
func TestTakenPortNamed(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldPort := strconv.Itoa(held.Addr().(*net.TCPAddr).Port)
	for _, flag := range []string{"cast-port", "fanout-port", "notify-port"} {
		// A call port that is free: the first free port the OS gives.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		callPort := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		args := []string{"--call-port", callPort, "--fanout-port", "0", "--notify-port", "0", "--cast-port", "0",
			"--" + flag, heldPort, "--ipc-dir", filepath.Join(t.TempDir(), "ipc"), "--log-level", "warn"}
		var stderr bytes.Buffer
		code := run(context.Background(), args, noEnv, &bytes.Buffer{}, &stderr, nil)
		msg := stderr.String()
		if code != 1 || !strings.Contains(msg, "--"+flag+" "+heldPort+": ") || !strings.Contains(msg, "127.0.0.1:"+heldPort+": address already in use") ||
			strings.Contains(msg, callPort) || strings.Count(msg, "\n") != 1 {
			t.Errorf("--%s %s taken, --call-port %s free: exit %d, %q; want exit 1 naming --%s %s only", flag, heldPort, callPort, code, msg, flag, heldPort)
		}
	}
}
