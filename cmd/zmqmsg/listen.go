package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
)

var cmdListen = &command{
	name:    "listen",
	args:    "TOPIC...",
	summary: "join a listener pool and print each notification as a JSON line",
	doc: `Joins the listener pool --pool for the TOPICs and prints each notification it
receives as one JSON line: topic, priority, publisher, event_type,
message_id, timestamp and payload (a payload that is not JSON is printed as
a JSON string). Every pool receives one copy of each notification; members
of one pool share them. A line on stderr says when it is listening. Runs
until SIGINT or SIGTERM, or until --count notifications arrived, then leaves
the pool and exits 0. Notifications that arrive while it stops are
acknowledged and not printed.`,
	minArgs: 1, maxArgs: -1,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.StringVar(&o.pool, "pool", "zmqmsg-cli", "listener pool `NAME` to join")
		fs.StringVar(&o.priorities, "priority", "", "comma-separated `priorities` to receive (default all)")
		fs.Int64Var(&o.count, "count", 0, "exit after `N` notifications (0: until a signal)")
		proxyDirFlag(fs, o)
	},
	run:    runListen,
	serves: true,
}

// notificationLine is how listen prints a notification.
type notificationLine struct {
	Topic     string          `json:"topic"`
	Priority  string          `json:"priority"`
	Publisher string          `json:"publisher"`
	EventType string          `json:"event_type"`
	MessageID string          `json:"message_id"`
	Timestamp time.Time       `json:"timestamp"`
	Payload   json.RawMessage `json:"payload"`
}

// parsePriorities parses a comma-separated --priority list.
func parsePriorities(s string) ([]zmqmsg.Priority, error) {
	var ps []zmqmsg.Priority
	for _, f := range strings.Split(s, ",") {
		if strings.TrimSpace(f) == "" {
			continue
		}
		p, err := parsePriority(f)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

func runListen(ctx context.Context, c *cli, topics []string) (err error) {
	var opts []zmqmsg.ListenOption
	if c.o.priorities != "" {
		ps, err := parsePriorities(c.o.priorities)
		if err != nil {
			return err
		}
		opts = append(opts, zmqmsg.WithPriorities(ps...))
	}
	if c.o.count < 0 {
		return usagef("--count %d is negative", c.o.count)
	}
	n, err := c.startNode(ctx, directory.Key{Exchange: notifyExchange, Topic: topics[0]}, func(cfg *zmqmsg.Config) {
		cfg.ServerConcurrency = 1 // print in arrival order
		cfg.ProxyDir = c.o.proxyDir
		cfg.RegistrationTTL = c.o.ttl
	})
	if err != nil {
		return err
	}
	defer n.close(&err)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := &linePrinter{w: c.stdout, limit: c.o.count, stop: cancel}
	handler := func(_ context.Context, m zmqmsg.Notification) error {
		line, err := json.Marshal(notificationLine{
			Topic: m.Topic, Priority: string(m.Priority), Publisher: m.PublisherID, EventType: m.EventType,
			MessageID: m.MessageID, Timestamp: m.Timestamp, Payload: jsonValue(m.Payload()),
		})
		if err != nil {
			return fmt.Errorf("encode notification: %w", err)
		}
		return out.printWhileRunning(line)
	}
	l, err := n.t.Listen(topics, c.o.pool, handler, opts...)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if c.g.json {
		c.notice("listening", slog.Any("topics", topics), slog.String("pool", c.o.pool))
	} else {
		c.notice(fmt.Sprintf("listening to %s in pool %q", strings.Join(topics, ", "), c.o.pool))
	}
	if err := stopWhenDone(ctx, l.Stop, "leave pool"); err != nil {
		return err
	}
	return out.writeErr()
}
