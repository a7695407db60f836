package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
)

// openDirectory opens --directory: a Redis directory that logs to the
// CLI's logger, or what directory.Open makes of the URL (memory:). The
// Redis directory logs its outage warnings at Info level until c.loud is
// set (see startNode): a command that cannot read the directory reports
// that as its error.
func (c *cli) openDirectory(ctx context.Context) (directory.Directory, error) {
	if opts, err := directory.ParseURL(c.g.directory); err == nil {
		opts.Logger = slog.New(demoted{Handler: c.log.Handler(), off: &c.loud})
		d, err := directory.NewRedis(opts)
		if err != nil {
			return nil, fmt.Errorf("open directory: %w", err)
		}
		return d, nil
	}
	d, err := directory.Open(ctx, c.g.directory)
	if err != nil {
		return nil, fmt.Errorf("open directory: %w", err)
	}
	return d, nil
}

// demoted is a slog.Handler that logs Warn and Error records at Info
// level, unless off is set.
type demoted struct {
	slog.Handler
	off *atomic.Bool
}

func (d demoted) level(l slog.Level) slog.Level {
	if d.off.Load() {
		return l
	}
	return min(l, slog.LevelInfo)
}

func (d demoted) Enabled(ctx context.Context, l slog.Level) bool {
	return d.Handler.Enabled(ctx, d.level(l))
}

func (d demoted) Handle(ctx context.Context, r slog.Record) error {
	r.Level = d.level(r.Level)
	return d.Handler.Handle(ctx, r)
}

func (d demoted) WithAttrs(attrs []slog.Attr) slog.Handler {
	return demoted{d.Handler.WithAttrs(attrs), d.off}
}

func (d demoted) WithGroup(name string) slog.Handler {
	return demoted{d.Handler.WithGroup(name), d.off}
}

// directoryError is a failure to read the directory (exit 6). It matches
// zmqmsg.ErrDirectoryUnavailable and the directory's own error.
type directoryError struct {
	url string // --directory without credentials or query
	err error
}

func (e *directoryError) Error() string {
	return fmt.Sprintf("directory %s unavailable: %v", e.url, e.err)
}

func (e *directoryError) Unwrap() []error { return []error{zmqmsg.ErrDirectoryUnavailable, e.err} }

// dirFailed wraps err, a directory operation's failure, as a
// *directoryError; the end of the caller's ctx (a timeout, a signal) stays
// what it is.
func (c *cli) dirFailed(err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return err
	}
	return &directoryError{url: redactURL(c.g.directory), err: err}
}

// redactURL returns a directory URL without its password and query (which
// may hold sentinel_password).
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(--directory)"
	}
	u.RawQuery, u.ForceQuery = "", false
	return u.Redacted()
}

// probe looks key up, so that a directory that cannot be read fails the
// command at once, with exit 6, before any message waits for servers.
func (c *cli) probe(ctx context.Context, dir directory.Directory, key directory.Key) error {
	if _, err := dir.Lookup(ctx, key); err != nil {
		return c.dirFailed(err)
	}
	return nil
}

// node is the CLI's own zmqmsg node and the directory it registers in.
type node struct {
	dir directory.Directory
	t   *zmqmsg.Transport
}

// maxWaitForServers bounds how long a message waits for a server of its
// target to appear in the directory: at most half of --timeout, so that
// "no servers" is told apart from a timeout.
const maxWaitForServers = 2 * time.Second

// startNode opens the directory, looks key up in it (see probe) and starts
// a Transport on free ports of --host. tweak, if not nil, adjusts the
// Config.
func (c *cli) startNode(ctx context.Context, key directory.Key, tweak func(*zmqmsg.Config)) (*node, error) {
	sec, err := c.security()
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, c.g.timeout)
	defer cancel()
	dir, err := c.openDirectory(dctx)
	if err != nil {
		return nil, err
	}
	if err := c.probe(dctx, dir, key); err != nil {
		return nil, errors.Join(err, dir.Close())
	}
	// A command that serves until stopped logs the directory's outages
	// from now on; a one-shot command reports them as its error.
	c.loud.Store(c.cmd.serves)
	cfg := zmqmsg.Config{
		Host:           c.g.host,
		Directory:      dir,
		Ports:          zmqmsg.Ports{Call: zmqmsg.AnyPort},
		Logger:         c.log,
		Codec:          passthrough{},
		WaitForServers: max(min(maxWaitForServers, c.g.timeout/2), time.Millisecond),
		Security:       sec,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	t, err := zmqmsg.New(cfg)
	if err != nil {
		where := "on " + c.g.host
		if cfg.ProxyDir != "" {
			where = "in the proxy daemon of " + cfg.ProxyDir
		}
		return nil, errors.Join(fmt.Errorf("start node %s: %w", where, curveHint(err)), dir.Close())
	}
	return &node{dir: dir, t: t}, nil
}

// security reads --curve-key and --curve-allow; an error names the flag
// whose file is bad.
func (c *cli) security() (*zmqmsg.Security, error) {
	if c.g.curveKey == "" {
		if c.g.curveAllow != "" {
			return nil, usagef("--curve-allow needs --curve-key")
		}
		return nil, nil
	}
	sec, err := zmqmsg.LoadSecurity(c.g.curveKey, "")
	if err != nil {
		return nil, usagef("--curve-key %s: %v", c.g.curveKey, err)
	}
	if c.g.curveAllow != "" {
		if sec.AllowedClients, err = zmqmsg.ReadAllowedClients(c.g.curveAllow); err != nil {
			return nil, usagef("--curve-allow %s: %v", c.g.curveAllow, err)
		}
	}
	return sec, nil
}

// curveHint adds to a CURVE mismatch what to do about it.
func curveHint(err error) error {
	switch {
	case errors.Is(err, zmqmsg.ErrSecurityRequired):
		return fmt.Errorf("%w (CURVE is on there: this command needs --curve-key FILE, a secret key made by zmqmsg keygen)", err)
	case errors.Is(err, zmqmsg.ErrInsecureNode):
		return fmt.Errorf("%w (CURVE is off there: run this command without --curve-key)", err)
	}
	return err
}

// settleTime is how long a node that served or sent one-way messages stays
// open after its servers stopped or its last direct cast was queued. Close
// lets libzmq flush what it holds (zmqmsg.CloseFlush), but the connection
// is then torn down at once, and the last bytes on it, such as the ACK of
// the last notification a listener ran, were lost in about 1 run of 3 of
// TestNotifyListen under -race without this wait: the sender then retries
// and reports the notification as not delivered.
const settleTime = 200 * time.Millisecond

// settle waits settleTime, or until ctx ends.
func settle(ctx context.Context) {
	t := time.NewTimer(settleTime)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// stopWhenDone waits for ctx to end, then stops what serves (stop, bounded
// by 5 s; its error is labelled what) and lets its last answers leave
// before the node closes.
func stopWhenDone(ctx context.Context, stop func(context.Context) error, what string) error {
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := stop(sctx); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	settle(sctx)
	return nil
}

// close closes the Transport, then the directory. It joins its error into
// *err unless *err is set already, so that `defer n.close(&err)` reports a
// failed close without hiding the command's own error.
func (n *node) close(err *error) {
	cerr := errors.Join(n.t.Close(), n.dir.Close())
	if cerr != nil && *err == nil {
		*err = fmt.Errorf("close: %w", cerr)
	}
}

// explain turns an ErrNoServers for key into a *directoryError when the
// directory fails now: with the directory unreadable, "no servers" would
// mislead.
func (c *cli) explain(ctx context.Context, n *node, key directory.Key, err error) error {
	if !errors.Is(err, zmqmsg.ErrNoServers) {
		return err
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(c.g.timeout, 2*time.Second))
	defer cancel()
	if _, perr := n.dir.Lookup(pctx, key); perr != nil {
		return &directoryError{url: redactURL(c.g.directory), err: fmt.Errorf("%v; %w", err, perr)}
	}
	return err
}

// passthrough is JSON, except that a reply decoded into a *[]byte is kept
// as its encoded bytes: the CLI prints replies without knowing their type.
type passthrough struct{ zmqmsg.JSON }

func (p passthrough) Unmarshal(data []byte, v any) error {
	if b, ok := v.(*[]byte); ok {
		*b = append([]byte(nil), data...)
		return nil
	}
	return p.JSON.Unmarshal(data, v)
}

// maxStdin bounds JSON arguments read from stdin.
const maxStdin = 64 << 20

// maxMessageSize is the largest payload the CLI's node sends: the default
// zmqmsg.Config.MaxMessageSize, which the CLI keeps.
const maxMessageSize = 16 << 20

// jsonArg returns the JSON argument pos[i] ("-" reads it from stdin) as a
// json.RawMessage, or nil (sent as JSON null) when there is none. Invalid
// JSON, or JSON over the message size limit, is a usage error.
func (c *cli) jsonArg(pos []string, i int) (any, error) {
	if len(pos) <= i {
		return nil, nil
	}
	src, b := "argument", []byte(pos[i])
	if pos[i] == "-" {
		var err error
		src = "stdin"
		b, err = io.ReadAll(io.LimitReader(c.stdin, maxStdin+1))
		if err != nil {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		if len(b) > maxStdin {
			return nil, usagef("JSON on stdin is over %d bytes", maxStdin)
		}
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, usagef("invalid JSON %s %q: %v", src, abbrev(b), err)
	}
	if buf.Len() > maxMessageSize {
		return nil, usagef("the JSON %s is %d bytes: over the message size limit of %d bytes", src, buf.Len(), maxMessageSize)
	}
	return json.RawMessage(buf.Bytes()), nil
}

// abbrev shortens b for an error message.
func abbrev(b []byte) string {
	if len(b) > 60 {
		return string(b[:57]) + "..."
	}
	return string(b)
}

// jsonValue returns b if it is valid JSON, else b as a JSON string.
func jsonValue(b []byte) json.RawMessage {
	if json.Valid(b) {
		return b
	}
	s, _ := json.Marshal(string(b)) // a string always encodes
	return s
}

// printJSON prints the JSON b on stdout: compact on one line with --json,
// indented otherwise. b that is not JSON (a raw []byte reply) is printed as
// a JSON string.
func (c *cli) printJSON(b []byte) error {
	b = jsonValue(b)
	var buf bytes.Buffer
	var err error
	if c.g.json {
		err = json.Compact(&buf, b)
	} else {
		err = json.Indent(&buf, b, "", "  ")
	}
	if err != nil {
		return fmt.Errorf("format reply: %w", err)
	}
	buf.WriteByte('\n')
	if _, err := c.stdout.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("write stdout: %w", err)
	}
	return nil
}

// printValue prints v as JSON (see printJSON).
func (c *cli) printValue(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	return c.printJSON(b)
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
