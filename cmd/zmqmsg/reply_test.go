package main

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/internal/redistest"
)

// reply answers calls, as a real process against a real Redis directory:
// README's walkthrough (a sum by a shell command), --echo, --json VALUE, a
// failing command (a remote error with its stderr), a command past the
// call's deadline (killed; the call times out), --count and SIGTERM.
func TestReply(t *testing.T) {
	srv := redistest.Start(t)
	env := map[string]string{"ZMQMSG_DIRECTORY": srv.URL() + "?prefix=" + t.Name()}
	// serve starts reply and waits for its "serving" line.
	serve := func(args ...string) *proc {
		t.Helper()
		p := spawn(t, env, append([]string{"reply"}, args...)...)
		if l := p.stderr.next(t); !strings.Contains(l, "serving") {
			t.Fatalf("reply %v: %q", args, l)
		}
		return p
	}
	call := func(args ...string) (string, string, int) {
		t.Helper()
		p := spawn(t, env, append([]string{"call"}, args...)...)
		code := p.wait(t, testTimeout)
		return p.stdout.String(), p.stderr.String(), code
	}

	// README's walkthrough, its two lines word for word, through a shell.
	replyLine, callLine := readmeLine(t, "zmqmsg reply calculator add "), readmeLine(t, "zmqmsg call calculator add ")
	sum := shell(t, env, "exec "+strings.TrimSuffix(replyLine, " &")+" --count 2")
	if l := sum.stderr.next(t); !strings.Contains(l, "serving") {
		t.Fatalf("%s: %q", replyLine, l)
	}
	sh := shell(t, env, callLine)
	if code := sh.wait(t, testTimeout); code != 0 || sh.stdout.String() != "5\n" {
		t.Fatalf("%s: exit %d, %q %q", callLine, code, sh.stdout.String(), sh.stderr.String())
	}
	if out, errOut, code := call("--json", "calculator", "add", `{"A":40,"B":2}`); code != 0 || out != "42\n" {
		t.Fatalf("second call: exit %d, %q %q", code, out, errOut)
	}
	// --count 2: it exits by itself, after printing both requests.
	if code := sum.wait(t, testTimeout); code != 0 {
		t.Fatalf("reply --count 2: exit %d: %s", code, sum.stderr.String())
	}
	if got := sum.stdout.String(); got != `{"method":"add","args":{"A":2,"B":3}}`+"\n"+`{"method":"add","args":{"A":40,"B":2}}`+"\n" {
		t.Errorf("reply's request lines: %q", got)
	}

	echo := serve("t-reply", "echo", "--echo", "--server", "e1")
	if out, errOut, code := call("--json", "t-reply", "echo", `{"k": [1, "x"]}`); code != 0 || out != `{"k":[1,"x"]}`+"\n" {
		t.Errorf("--echo: exit %d, %q %q", code, out, errOut)
	}
	if out, _, code := call("--json", "--server", "e1", "t-reply", "other"); code != exitRemote || out != "" {
		t.Errorf("a method reply does not serve: exit %d", code)
	}
	echo.signal(t, syscall.SIGTERM)
	if code := echo.wait(t, testTimeout); code != 0 {
		t.Errorf("reply after SIGTERM: exit %d: %s", code, echo.stderr.String())
	}

	fixed := serve("t-reply", "get", "--json", `{ "fixed" : true }`)
	if out, errOut, code := call("t-reply", "get", "1"); code != 0 || out != "{\n  \"fixed\": true\n}\n" {
		t.Errorf("--json VALUE: exit %d, %q %q", code, out, errOut)
	}
	fixed.signal(t, syscall.SIGINT)
	if code := fixed.wait(t, testTimeout); code != 0 {
		t.Errorf("reply after SIGINT: exit %d: %s", code, fixed.stderr.String())
	}

	cmd := serve("t-reply", "run", "--command", `case $(cat) in *slow*) sleep 30;; *fail*) echo "it broke" >&2; exit 3;; *) echo not json;; esac`)
	if out, errOut, code := call("t-reply", "run", `"plain"`); code != 0 || out != "\"not json\"\n" {
		t.Errorf("output that is not JSON: exit %d, %q %q", code, out, errOut)
	}
	out, errOut, code := call("--json", "t-reply", "run", `"fail"`)
	if e := decode[map[string]any](t, errOut); code != exitRemote || out != "" || e["remote_type"] != "CommandFailed" || e["remote_message"] != "it broke (exit 3)" {
		t.Errorf("a failing command: exit %d, %q %v", code, out, e)
	}
	t0 := time.Now()
	if _, errOut, code := call("--timeout", "500ms", "t-reply", "run", `"slow"`); code != exitTimeout || time.Since(t0) > 5*time.Second {
		t.Errorf("a command past the deadline: exit %d after %v: %q", code, time.Since(t0), errOut)
	}
	cmd.signal(t, syscall.SIGTERM)
	if code := cmd.wait(t, testTimeout); code != 0 {
		t.Errorf("reply after SIGTERM: exit %d: %s", code, cmd.stderr.String())
	}
	if !strings.Contains(cmd.stdout.String(), `{"method":"run","args":"fail","error":"it broke (exit 3)"}`) {
		t.Errorf("reply's request lines: %q", cmd.stdout.String())
	}
}

// readmeLine returns the line of README.md that starts with prefix, without
// its comment.
func readmeLine(t *testing.T, prefix string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			if i := strings.Index(l, "  #"); i > 0 {
				l = l[:i]
			}
			return strings.TrimSpace(l)
		}
	}
	t.Fatalf("README.md has no line %q...", prefix)
	return ""
}

// reply's flags: exactly one answer, and a --json VALUE that is JSON.
func TestReplyUsage(t *testing.T) {
	for _, args := range [][]string{
		{"reply", "t", "m"},
		{"reply", "t", "m", "--echo", "--json", "1"},
		{"reply", "t", "m", "--json", "{bad"},
		{"reply", "t", "m", "--echo", "--count", "-1"},
	} {
		mem(t, args...).want(t, exitUsage)
	}
	// ZMQMSG_JSON (machine output elsewhere) is not reply's --json VALUE.
	r := cliRun(t, map[string]string{"ZMQMSG_JSON": "true"}, "", "reply", "--directory", "memory:", "t", "m").want(t, exitUsage)
	if !strings.Contains(r.stderr, "exactly one of") {
		t.Errorf("ZMQMSG_JSON=true: %q", r.stderr)
	}
	if r := cliRun(t, nil, "", "help", "reply").want(t, 0); !strings.Contains(r.stdout, "--json VALUE\n") || strings.Contains(r.stdout, "--json\n") {
		t.Errorf("help reply:\n%s", r.stdout)
	}
}
