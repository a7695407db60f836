package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// jsonLines fails the test unless every line of s is a JSON object, and
// returns them.
func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("stderr line %q is not JSON (%v); all of it:\n%s", l, err, s)
		}
		out = append(out, m)
	}
	return out
}

// Under --json every line on stderr is JSON: the logs, the status lines
// and the error.
func TestJSONLogs(t *testing.T) {
	benchServer(t, "t-jsonlog")
	r := mem(t, "--json", "--log-level", "debug", "call", "t-jsonlog", "echo", "{}").want(t, 0)
	logs := jsonLines(t, r.stderr)
	if len(logs) == 0 || logs[0]["msg"] == nil || logs[0]["level"] == nil {
		t.Errorf("debug logs under --json: %v", logs)
	}
	r = mem(t, "--json", "--log-level", "debug", "call", "--timeout", "1s", "t-jsonlog-nobody", "m").want(t, exitUndelivered)
	if l := jsonLines(t, r.stderr); l[len(l)-1]["type"] != "no_servers" {
		t.Errorf("last line %v, want the error", l[len(l)-1])
	}
	// Without --json, logs are text.
	r = mem(t, "--log-level", "debug", "call", "t-jsonlog", "echo", "{}").want(t, 0)
	if !strings.HasPrefix(r.stderr, "time=") {
		t.Errorf("text logs: %q", r.stderr)
	}

	l := start(t, nil, "listen", "--directory", "memory:", "--json", "--count", "1", "t-jsonlog-n")
	line := l.stderr.next(t)
	if m := jsonLines(t, line); m[0]["msg"] != "listening" || m[0]["pool"] != "zmqmsg-cli" {
		t.Errorf("listening line %q", line)
	}
	mem(t, "notify", "t-jsonlog-n", "e").want(t, 0)
	if code := l.wait(t); code != 0 {
		t.Fatalf("listen exit %d", code)
	}
	if r := mem(t, "--json", "servers", "t-jsonlog-nothing").want(t, 0); r.stderr != "" || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("servers --json, none: %q %q", r.stdout, r.stderr)
	}
}
