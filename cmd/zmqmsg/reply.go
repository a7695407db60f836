package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
)

var cmdReply = &command{
	name:    "reply",
	args:    "TOPIC METHOD",
	summary: "serve METHOD on TOPIC: echo, a fixed JSON value, or a shell command's output",
	doc: `An ad-hoc server: serves METHOD on TOPIC until SIGINT or SIGTERM (or --count
requests), answering each request with exactly one of
  --echo          the request's arguments as they came
  --json VALUE    the JSON VALUE, always the same
  --command CMD   the output of sh -c CMD, which reads the request's JSON
                  arguments on stdin; a non-zero exit is a remote error
                  (type CommandFailed) whose message is its stderr, and CMD
                  is killed at the request's deadline
Output that is not JSON is sent as a string. A line on stderr says when it
serves; each request is printed on stdout as one JSON line {"method",
"args", and "error" if it failed}. Here --json takes the reply's value (the
output is JSON lines already; ZMQMSG_JSON does not set it). For example:

  zmqmsg reply calculator add --command 'tr -dc 0-9, | { IFS=, read a b; echo $((a+b)); }'
  zmqmsg call calculator add '{"A":2,"B":3}'     # prints 5`,
	minArgs: 2, maxArgs: 2,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.BoolVar(&o.echo, "echo", false, "answer each request with its own arguments")
		fs.StringVar(&o.value, "json", "", "answer each request with this JSON `VALUE`")
		fs.StringVar(&o.command, "command", "", "answer each request with the output of sh -c `CMD` (the request's JSON on its stdin)")
		fs.StringVar(&o.server, "server", "", "server `NAME` (default reply-PID@HOST:PORT of its node)")
		fs.Int64Var(&o.count, "count", 0, "exit after `N` requests (0: until a signal)")
		proxyDirFlag(fs, o)
	},
	run:     runReply,
	serves:  true,
	ownJSON: true,
}

// maxCommandStderr bounds the stderr of a --command kept for its error.
const maxCommandStderr = 64 << 10

// commandError is a --command that failed; the caller gets a RemoteError
// of type CommandFailed.
type commandError struct{ msg string }

func (e *commandError) Error() string { return e.msg }

// ErrorType names the error for the caller's RemoteError.Type.
func (e *commandError) ErrorType() string { return "CommandFailed" }

// requestLine is how reply prints a request.
type requestLine struct {
	Method string          `json:"method"`
	Args   json.RawMessage `json:"args"`
	Error  string          `json:"error,omitempty"`
}

func runReply(ctx context.Context, c *cli, pos []string) (err error) {
	topic, method := pos[0], pos[1]
	value, err := c.replyValue()
	if err != nil {
		return err
	}
	if c.o.count < 0 {
		return usagef("--count %d is negative", c.o.count)
	}
	key := directory.Key{Exchange: c.g.exchange, Topic: topic}
	n, err := c.startNode(ctx, key, func(cfg *zmqmsg.Config) { cfg.ProxyDir, cfg.RegistrationTTL = c.o.proxyDir, c.o.ttl })
	if err != nil {
		return err
	}
	defer n.close(&err)
	name := c.o.server
	if name == "" {
		name = fmt.Sprintf("reply-%d@%s", os.Getpid(), n.t.Node().ID())
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := &linePrinter{w: c.stdout, limit: c.o.count, stop: cancel}
	handler := c.replyHandler(method, value, out)
	srv, err := n.t.Serve(zmqmsg.Target{Exchange: c.g.exchange, Topic: topic, Server: name}, zmqmsg.Endpoints{method: handler})
	if err != nil {
		return fmt.Errorf("serve %s: %w", topic, err)
	}
	c.notice(fmt.Sprintf("serving %s %s as %s", key, method, name))
	if err := stopWhenDone(ctx, srv.Stop, "stop"); err != nil {
		return err
	}
	return out.writeErr()
}

// replyValue checks that exactly one of --echo, --json and --command is
// given, and returns the --json value (nil without --json).
func (c *cli) replyValue() (json.RawMessage, error) {
	modes := 0
	for _, set := range []bool{c.o.echo, isSet(c.fs, "json"), c.o.command != ""} {
		if set {
			modes++
		}
	}
	if modes != 1 {
		return nil, usagef("want exactly one of --echo, --json VALUE and --command CMD")
	}
	if !isSet(c.fs, "json") {
		return nil, nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(c.o.value)); err != nil {
		return nil, usagef("--json %q: invalid JSON: %v", abbrev([]byte(c.o.value)), err)
	}
	return buf.Bytes(), nil
}

// replyHandler returns the handler of method: it answers with the request
// (--echo), value (--json) or the output of --command, and prints the
// request to out.
func (c *cli) replyHandler(method string, value json.RawMessage, out *linePrinter) zmqmsg.Handler {
	return func(ctx context.Context, a zmqmsg.Args) (any, error) {
		req := bytes.Clone(a.Raw()) // Raw is valid while the handler runs
		var reply any
		var herr error
		switch {
		case c.o.echo:
			reply = req
		case value != nil:
			reply = value
		default:
			reply, herr = runCommand(ctx, c.o.command, req)
		}
		line := requestLine{Method: method, Args: jsonValue(req)}
		if herr != nil {
			line.Error = herr.Error()
		}
		b, err := json.Marshal(line)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		_ = out.print(b) // a write error stops reply, which returns it
		return reply, herr
	}
}

// runCommand runs sh -c command with req on its stdin, bounded by ctx, and
// returns its output: as JSON if it is JSON, else as raw bytes (which the
// caller sees as a string).
func runCommand(ctx context.Context, command string, req []byte) (any, error) {
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Stdin = bytes.NewReader(req)
	var stdout bytes.Buffer
	stderr := &capped{max: maxCommandStderr}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	// Its own process group, killed whole at the deadline: a child of the
	// shell must not keep the pipes (and the request) open.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if cerr := ctx.Err(); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		var ee *exec.ExitError
		switch {
		case msg != "" && errors.As(err, &ee):
			msg = fmt.Sprintf("%s (exit %d)", msg, ee.ExitCode())
		case msg == "":
			msg = err.Error()
		}
		return nil, &commandError{msg: msg}
	}
	out := bytes.TrimRight(stdout.Bytes(), "\r\n")
	if json.Valid(out) {
		return json.RawMessage(out), nil
	}
	return out, nil
}

// capped is a buffer that keeps the first max bytes written to it.
type capped struct {
	buf bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (c *capped) String() string { return c.buf.String() }

var _ io.Writer = (*capped)(nil)
