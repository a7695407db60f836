package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/internal/envflag"
)

var cmdCall = &command{
	name:    "call",
	args:    "TOPIC METHOD [JSON|-]",
	summary: "call METHOD on one server of TOPIC, print its reply as JSON",
	doc: `Calls METHOD on one server of TOPIC (round robin, or --server) with the JSON
arguments (JSON null if none; "-" reads them from stdin) and prints the reply
as JSON: indented, or on one line with --json. A reply that is not JSON (raw
bytes) is printed as a JSON string. Invalid JSON, or JSON over the 16 MiB
message size limit, is refused before anything is sent (exit 2). Waits for
the reply up to --timeout.

With --all it calls every server of TOPIC (scatter-gather) and prints one line
per server as the answers come: name, node, milliseconds, and the reply or
the error; then a line for each server that did not answer (its node
unreached, or still silent at --timeout, or --stall after the last answer).
With --json each line is a JSON object. Exit 0 when every server replied,
else the code of the first failure.

With --monitor D the server sends a heartbeat every D while the handler
runs; a server silent for 2×D (frozen, or restarted behind its address)
fails the call at once (exit 5, server_lost) instead of at --timeout. A
server older than the monitor sends none: the call waits as without it.`,
	minArgs: 2, maxArgs: 3,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.StringVar(&o.server, "server", "", "call the server `NAME` of the topic instead of any (round robin)")
		fs.BoolVar(&o.all, "all", false, "call every server of the topic; a line per server")
		envflag.DurationVar(fs, &o.stall, "stall", 0, "with --all: stop waiting `D` after the last answer (0: wait up to --timeout)")
		fs.IntVar(&o.maxReplies, "max", 0, "with --all: stop after `N` answers (0: every server)")
		envflag.DurationVar(fs, &o.monitor, "monitor", 0, "ask the server for a heartbeat every `D` (at least 10ms); fail when it is silent for 2×D (0: off)")
	},
	run: runCall,
}

var cmdCast = &command{
	name:    "cast",
	args:    "TOPIC METHOD [JSON|-]",
	summary: "send a one-way message to one server of TOPIC",
	doc: `Sends METHOD with the JSON arguments to one server of TOPIC without waiting for
a result. By default it waits for the server's acknowledgement (retrying;
exit 5 if none comes). With --direct it uses the direct-cast pipeline
(PUSH/PULL, no acknowledgement): success means only that the message was
queued; the CLI then lingers 200ms so that the message leaves the process.
Prints nothing on success, or a JSON status with --json.`,
	minArgs: 2, maxArgs: 3,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.StringVar(&o.server, "server", "", "cast to the server `NAME` of the topic instead of any (round robin)")
		fs.BoolVar(&o.direct, "direct", false, "use the direct-cast pipeline: no acknowledgement, in order per server")
	},
	run: runCast,
}

var cmdFanout = &command{
	name:    "fanout",
	args:    "TOPIC METHOD [JSON|-]",
	summary: "send a one-way message to every server of TOPIC",
	doc: `Sends METHOD with the JSON arguments to every server of TOPIC. Succeeds once
every node serving the topic has taken the message; exit 5 names the nodes
that did not. Prints nothing on success, or a JSON status with --json.

Before sending, METHOD is checked against the methods the servers of TOPIC
publish in the directory (see zmqmsg servers): if one of them does not offer
it, nothing is sent, and the error names the servers that lack it and what
they offer (exit 4; with --json type "no_such_method" and "lacking"). A
server that publishes no methods (an older node) is not checked: there an
unknown method is dropped and counted by the server's node.`,
	minArgs: 2, maxArgs: 3,
	run: runFanout,
}

var cmdNotify = &command{
	name:    "notify",
	args:    "TOPIC EVENT_TYPE [JSON|-]",
	summary: "publish a notification to every listener pool of TOPIC",
	doc: `Publishes a notification of EVENT_TYPE with the JSON payload to TOPIC: every
listener pool of the topic receives one copy. Succeeds once every pool has
acknowledged it; exit 5 names the pools that did not get it, or says that no
pool listens to the topic (the notification is unheard; with --json the error
has "unheard": true). Prints nothing on success, or a JSON status with --json.`,
	minArgs: 2, maxArgs: 3,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.StringVar(&o.priority, "priority", "info", "`priority`: audit, debug, info, warn, error, critical or sample")
		fs.StringVar(&o.publisher, "publisher", "", "publisher `ID` (default zmqmsg-cli@HOSTNAME)")
	},
	run: runNotify,
}

// request is the TOPIC METHOD [JSON|-] of call, cast and fanout.
type request struct {
	key    directory.Key
	method string
	args   any
}

func (c *cli) request(pos []string) (request, error) {
	args, err := c.jsonArg(pos, 2)
	return request{key: directory.Key{Exchange: c.g.exchange, Topic: pos[0]}, method: pos[1], args: args}, err
}

// failed returns the error of verb r that failed with err, explained.
func (c *cli) failed(ctx context.Context, n *node, verb string, r request, err error) error {
	err = c.explain(ctx, n, r.key, err)
	return fmt.Errorf("%s %s %s: %w", verb, r.key.Topic, r.method, curveHint(err))
}

func runCall(ctx context.Context, c *cli, pos []string) error {
	r, err := c.request(pos)
	if err != nil {
		return err
	}
	if c.o.all {
		if c.o.server != "" {
			return usagef("--all calls every server: it takes no --server")
		}
		return c.withNode(ctx, r.key, func(n *node, octx context.Context) error { return c.callAll(ctx, octx, n, r) })
	}
	if c.o.stall != 0 || c.o.maxReplies != 0 {
		return usagef("--stall and --max go with --all")
	}
	if c.o.monitor < 0 {
		return usagef("--monitor %v: a duration of 0 (off) or more", c.o.monitor)
	}
	return c.withNode(ctx, r.key, func(n *node, octx context.Context) error {
		var reply []byte
		target := zmqmsg.Target{Exchange: c.g.exchange, Topic: r.key.Topic, Server: c.o.server}
		var opts []zmqmsg.ClientOption
		if c.o.monitor > 0 {
			opts = append(opts, zmqmsg.MonitorEvery(c.o.monitor))
		}
		if err := n.t.Client(target, opts...).Call(octx, r.method, r.args, &reply); err != nil {
			return c.failed(ctx, n, "call", r, err)
		}
		return c.printJSON(reply)
	})
}

// callAll prints a line per server of r's topic as the answers come, and
// returns the first failure.
func (c *cli) callAll(ctx, octx context.Context, n *node, r request) error {
	target := zmqmsg.Target{Exchange: c.g.exchange, Topic: r.key.Topic}
	var first error
	var failed, total int
	var werr error
	err := n.t.Client(target).CallAllFunc(octx, r.method, r.args, func(sr zmqmsg.ServerReply) bool {
		total++
		var reply []byte
		err := sr.Decode(&reply)
		if err != nil {
			failed++
			if first == nil {
				first = err
			}
		}
		if werr == nil {
			werr = c.serverLine(sr, reply, err)
		}
		return werr == nil
	}, zmqmsg.StallAfter(c.o.stall), zmqmsg.MaxReplies(c.o.maxReplies))
	switch {
	case err != nil:
		return c.failed(ctx, n, "call --all", r, err)
	case werr != nil:
		return werr
	case first != nil:
		return fmt.Errorf("call --all %s %s: %d of %d servers did not reply: %w", r.key.Topic, r.method, failed, total, first)
	}
	return nil
}

// serverLine prints one server's answer of call --all.
func (c *cli) serverLine(sr zmqmsg.ServerReply, reply []byte, err error) error {
	ms := float64(sr.Elapsed.Microseconds()) / 1000
	var line []byte
	if c.g.json {
		v := map[string]any{"server": sr.Server, "node": sr.Node, "elapsed_ms": ms}
		if err != nil {
			_, kind := classify(err)
			v["error"], v["type"] = err.Error(), kind
		} else {
			v["reply"] = jsonValue(reply)
		}
		b, merr := json.Marshal(v)
		if merr != nil {
			return fmt.Errorf("encode output: %w", merr)
		}
		line = b
	} else {
		answer := "error: "
		if err != nil {
			answer += err.Error()
		} else {
			var buf bytes.Buffer
			if cerr := json.Compact(&buf, jsonValue(reply)); cerr != nil {
				return fmt.Errorf("format reply: %w", cerr)
			}
			answer = buf.String()
		}
		line = fmt.Appendf(nil, "%-28s %-21s %9.2fms  %s", sr.Server, sr.Node, ms, answer)
	}
	if _, err := c.stdout.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("write stdout: %w", err)
	}
	return nil
}

func runCast(ctx context.Context, c *cli, pos []string) error {
	r, err := c.request(pos)
	if err != nil {
		return err
	}
	return c.withNode(ctx, r.key, func(n *node, octx context.Context) error {
		var opts []zmqmsg.ClientOption
		pattern := "cast"
		if c.o.direct {
			opts, pattern = append(opts, zmqmsg.DirectCast()), "direct"
		}
		t0 := time.Now()
		target := zmqmsg.Target{Exchange: c.g.exchange, Topic: r.key.Topic, Server: c.o.server}
		if err := n.t.Client(target, opts...).Cast(octx, r.method, r.args); err != nil {
			return c.failed(ctx, n, "cast", r, err)
		}
		elapsed := time.Since(t0)
		if c.o.direct {
			settle(ctx) // nothing acknowledges a direct cast: let it leave
		}
		return c.status(pattern, r.key.Topic, "method", r.method, elapsed)
	})
}

func runFanout(ctx context.Context, c *cli, pos []string) error {
	r, err := c.request(pos)
	if err != nil {
		return err
	}
	return c.withNode(ctx, r.key, func(n *node, octx context.Context) error {
		t0 := time.Now()
		if err := c.checkMethod(octx, n, r.key, r.method); err != nil {
			return fmt.Errorf("fanout %s %s: %w", r.key.Topic, r.method, err)
		}
		target := zmqmsg.Target{Exchange: c.g.exchange, Topic: r.key.Topic, Fanout: true}
		if err := n.t.Client(target).Cast(octx, r.method, r.args); err != nil {
			return c.failed(ctx, n, "fanout", r, err)
		}
		return c.status("fanout", r.key.Topic, "method", r.method, time.Since(t0))
	})
}

// checkMethod looks key's servers up and returns a *noSuchMethodError if
// any of those that publish their methods lacks method. A fanout has no
// answer to carry the servers' refusal: they would drop it.
func (c *cli) checkMethod(ctx context.Context, n *node, key directory.Key, method string) error {
	entries, err := n.dir.Lookup(ctx, key)
	if err != nil {
		return c.dirFailed(err)
	}
	var lacking []directory.Entry
	for _, e := range entries {
		if e.Methods != nil && !slices.Contains(e.Methods, method) {
			lacking = append(lacking, e)
		}
	}
	if len(lacking) == 0 {
		return nil
	}
	return &noSuchMethodError{key: key, method: method, lacking: lacking}
}

// Bounds of what a noSuchMethodError names: servers, and methods of each.
const (
	maxLackingNamed = 5
	maxOfferedNamed = 10
)

// noSuchMethodError: servers of a fanout's topic that publish their
// methods do not offer its method; nothing was sent (exit 4).
type noSuchMethodError struct {
	key     directory.Key
	method  string
	lacking []directory.Entry
}

func (e *noSuchMethodError) Error() string {
	var b strings.Builder
	if len(e.lacking) == 1 {
		fmt.Fprintf(&b, "no such method: a server of %s does not offer %q (nothing sent): ", e.key, e.method)
	} else {
		fmt.Fprintf(&b, "no such method: %d servers of %s do not offer %q (nothing sent): ", len(e.lacking), e.key, e.method)
	}
	for i, l := range e.named() {
		if i > 0 {
			b.WriteString(", ")
		}
		quoted := make([]string, len(l.Offered))
		for j, m := range l.Offered {
			quoted[j] = strconv.Quote(m)
		}
		if l.More > 0 {
			quoted = append(quoted, fmt.Sprintf("… %d more", l.More))
		}
		fmt.Fprintf(&b, "%s (offered: %s)", l.Server, strings.Join(quoted, ", "))
	}
	if more := len(e.lacking) - maxLackingNamed; more > 0 {
		fmt.Fprintf(&b, " and %d more", more)
	}
	return b.String()
}

// lackingServer is one server named by a noSuchMethodError: its name, the
// first methods it offers and how many more it does.
type lackingServer struct {
	Server  string   `json:"server"`
	Node    string   `json:"node"`
	Offered []string `json:"offered"`
	More    int      `json:"offered_more,omitempty"`
}

// named returns the first maxLackingNamed servers of e, each with its
// first maxOfferedNamed methods.
func (e *noSuchMethodError) named() []lackingServer {
	out := make([]lackingServer, 0, min(len(e.lacking), maxLackingNamed))
	for _, l := range e.lacking[:min(len(e.lacking), maxLackingNamed)] {
		n := min(len(l.Methods), maxOfferedNamed)
		out = append(out, lackingServer{Server: l.Server, Node: l.Node.ID(), Offered: l.Methods[:n], More: len(l.Methods) - n})
	}
	return out
}

// withNode starts the CLI's node (probing key), runs send with a context bounded by
// --timeout, and closes the node (a close error is reported only if send
// succeeded).
func (c *cli) withNode(ctx context.Context, key directory.Key, send func(n *node, octx context.Context) error) (err error) {
	n, err := c.startNode(ctx, key, nil)
	if err != nil {
		return err
	}
	defer n.close(&err)
	octx, cancel := context.WithTimeout(ctx, c.g.timeout)
	defer cancel()
	return send(n, octx)
}

// notifyExchange is where listener pools register (engine.NotifyExchange).
const notifyExchange = "zmqmsg.notify"

// parsePriority parses a --priority value.
func parsePriority(s string) (zmqmsg.Priority, error) {
	p := zmqmsg.Priority(strings.ToLower(strings.TrimSpace(s)))
	if !p.Valid() {
		return "", usagef("bad priority %q: want one of %v", s, zmqmsg.Priorities)
	}
	return p, nil
}

func runNotify(ctx context.Context, c *cli, pos []string) error {
	topic, eventType := pos[0], pos[1]
	p, err := parsePriority(c.o.priority)
	if err != nil {
		return err
	}
	if eventType == "" {
		return usagef("empty EVENT_TYPE")
	}
	payload, err := c.jsonArg(pos, 2)
	if err != nil {
		return err
	}
	publisher := c.o.publisher
	if publisher == "" {
		host, _ := os.Hostname() // "" is an acceptable fallback
		publisher = "zmqmsg-cli@" + host
	}
	return c.withNode(ctx, directory.Key{Exchange: notifyExchange, Topic: topic}, func(n *node, octx context.Context) error {
		t0 := time.Now()
		unheard := n.t.Stats().NotificationsUnheard
		if err := n.t.Notifier(publisher, topic).Notify(octx, p, eventType, payload); err != nil {
			return fmt.Errorf("notify %s %s: %w", topic, eventType, curveHint(err))
		}
		if n.t.Stats().NotificationsUnheard != unheard {
			return fmt.Errorf("notify %s %s: %w", topic, eventType, &unheardError{topic: topic})
		}
		return c.status("notify", topic, "event_type", eventType, time.Since(t0))
	})
}

// status prints the JSON status of a one-way send with --json, nothing
// otherwise: {"ok":true, "pattern", "exchange", "topic", key: value,
// "elapsed_ms"}.
func (c *cli) status(pattern, topic, key, value string, elapsed time.Duration) error {
	if !c.g.json {
		return nil
	}
	return c.printValue(map[string]any{
		"ok": true, "pattern": pattern, "exchange": c.g.exchange, "topic": topic, key: value,
		"elapsed_ms": ms(elapsed),
	})
}
