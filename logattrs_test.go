package zmqmsg

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/internal/testutil"
)

// A log line about a message carries its id and, when the caller traced
// it (a traceparent in its metadata), the trace id: logs and traces join.
func TestLogLinesCarryIDAndTraceID(t *testing.T) {
	dir := newDir(t)
	var logs testutil.LogBuffer
	srv := newNode(t, dir, func(c *Config) { c.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	serve(t, srv, Target{Topic: "logs"}, Endpoints{"boom": func(context.Context, Args) (any, error) { panic("boom") }})
	c := newNode(t, dir).Client(Target{Topic: "logs"})
	ctx := WithMetadata(testCtx(t, 10*time.Second), "traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	if err := c.Call(ctx, "boom", nil, nil); !errors.As(err, new(*RemoteError)) {
		t.Fatalf("boom: %v", err)
	}
	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `"msg":"handler panicked"`) {
			line = l
		}
	}
	if !strings.Contains(line, `"trace_id":"0af7651916cd43dd8448eb211c80319c"`) || !strings.Contains(line, `"id":"`) {
		t.Fatalf("the panic's log line lacks its id or trace id: %q", line)
	}
}
