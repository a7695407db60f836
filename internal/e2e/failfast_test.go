package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/internal/redistest"
)

// Issue 10, item 1, as a user saw it: a bench server SIGKILLed while its
// directory entry lives on (TTL 60 s) beside a healthy one. Every one-shot
// CLI call (a new process each time, 2 s timeout) is answered by the
// healthy server, none times out; a call for the dead server by name fails
// at once as not delivered (exit 5), naming its node, instead of timing
// out (exit 3). Before the fix 6 of 6 such calls timed out.
func TestSigkilledServerNeverStallsCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs processes; skipped with -short")
	}
	cli, _ := build(t)
	rds := redistest.Start(t)
	const topic = "ff"
	doomed := spawn(t, "doomed", cli, "--directory", rds.URL(), "--host", "127.0.0.2", "bench", "server",
		"--topic", topic, "--name", "doomed", "--ttl", "60s")
	healthy := spawn(t, "healthy", cli, "--directory", rds.URL(), "bench", "server",
		"--topic", topic, "--name", "healthy", "--ttl", "60s")
	doomed.waitLine(t, `"ready":true`, 30*time.Second)
	healthy.waitLine(t, `"ready":true`, 30*time.Second)
	if code := doomed.stop(t, syscall.SIGKILL); code != -1 {
		t.Fatalf("doomed exited %d, want killed", code)
	}
	out, code := run(t, cli, "--directory", rds.URL(), "--json", "servers", topic)
	if code != 0 || !strings.Contains(out, `"doomed"`) {
		t.Fatalf("servers: exit %d, %s: want the dead server still listed", code, out)
	}
	for i := range 6 {
		out, code := run(t, cli, "--directory", rds.URL(), "--timeout", "2s", "--json", "call", topic, "whoami")
		var got echoResult
		if code != 0 || json.Unmarshal([]byte(lastLine(out)), &got) != nil || got.Server != "healthy" {
			t.Fatalf("call %d: exit %d, %q: want the healthy server's answer", i, code, out)
		}
	}
	stderr, code := runErr(t, cli, "--directory", rds.URL(), "--timeout", "10s", "--json", "call", "--server", "doomed", topic, "whoami")
	if code != 5 || !strings.Contains(stderr, "127.0.0.2:") || !strings.Contains(stderr, `"type":"unavailable"`) {
		t.Fatalf("call to the dead server by name: exit %d, stderr %s: want exit 5, type unavailable, naming its node", code, stderr)
	}
}

// runErr runs the CLI to completion and returns its stderr and exit code.
func runErr(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	code := cmd.ProcessState.ExitCode()
	if err != nil && code <= 0 {
		t.Fatalf("%s %v: %v\n%s", bin, args, err, stderr.String())
	}
	return stderr.String(), code
}
