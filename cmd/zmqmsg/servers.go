package main

import (
	"context"
	"fmt"
	"math"
	"text/tabwriter"
	"time"

	"github.com/zmqmsg/zmqmsg/directory"
)

var cmdServers = &command{
	name:    "servers",
	args:    "[TOPIC]",
	summary: "list the servers and listeners the directory knows",
	doc: `Lists the live registrations of the directory: exchange, topic, server, the
node's endpoints (call, fanout, notify, cast) and when the registration
expires unless refreshed (time and seconds left). Notification listeners
appear in the exchange "zmqmsg.notify", named POOL/NODE#N. TOPIC keeps only
that topic; --exchange (when given) keeps only that exchange. Prints a table,
or a JSON array with --json.`,
	minArgs: 0, maxArgs: 1,
	run: runServers,
}

// serverLine is how servers prints one registration with --json.
type serverLine struct {
	Exchange  string            `json:"exchange"`
	Topic     string            `json:"topic"`
	Server    string            `json:"server"`
	Node      string            `json:"node"`
	Endpoints map[string]string `json:"endpoints"`
	Expires   time.Time         `json:"expires"`
	ExpiresIn float64           `json:"expires_in_s"`
	CurveKey  string            `json:"curve_key,omitempty"`
}

func runServers(ctx context.Context, c *cli, pos []string) (err error) {
	// --exchange filters only when given: its default "" is a real exchange.
	byExchange := isSet(c.fs, "exchange")
	ctx, cancel := context.WithTimeout(ctx, c.g.timeout)
	defer cancel()
	dir, err := c.openDirectory(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := dir.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close directory: %w", cerr)
		}
	}()
	ls, ok := dir.(directory.Lister)
	if !ok {
		return fmt.Errorf("directory %q cannot list its entries", c.g.directory)
	}
	entries, err := ls.List(ctx)
	if err != nil {
		return c.dirFailed(err)
	}
	now := time.Now()
	lines := []serverLine{}
	for _, e := range entries {
		if (len(pos) > 0 && e.Topic != pos[0]) || (byExchange && e.Exchange != c.g.exchange) {
			continue
		}
		eps := map[string]string{"call": e.Node.CallEndpoint()}
		for k, v := range map[string]string{"fanout": e.Node.FanoutEndpoint(), "notify": e.Node.NotifyEndpoint(), "cast": e.Node.CastEndpoint()} {
			if v != "" {
				eps[k] = v
			}
		}
		lines = append(lines, serverLine{
			Exchange: e.Exchange, Topic: e.Topic, Server: e.Server, Node: e.Node.ID(), Endpoints: eps,
			Expires: e.Expires, ExpiresIn: math.Round(e.Expires.Sub(now).Seconds()*10) / 10,
			CurveKey: e.Node.CurveKey,
		})
	}
	if c.g.json {
		return c.printValue(lines)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EXCHANGE\tTOPIC\tSERVER\tCALL\tFANOUT\tNOTIFY\tCAST\tCURVE\tEXPIRES")
	for _, l := range lines {
		ex := l.Exchange
		if ex == "" {
			ex = "(default)"
		}
		curve := "-"
		if l.CurveKey != "" {
			curve = l.CurveKey[:min(8, len(l.CurveKey))] + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s (%.0fs)\n", ex, l.Topic, l.Server,
			dash(l.Endpoints["call"]), dash(l.Endpoints["fanout"]), dash(l.Endpoints["notify"]), dash(l.Endpoints["cast"]),
			curve, l.Expires.Local().Format(time.TimeOnly), l.ExpiresIn)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write stdout: %w", err)
	}
	if len(lines) == 0 {
		c.notice("no live registrations")
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
