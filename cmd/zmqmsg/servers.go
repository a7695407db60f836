package main

import (
	"context"
	"fmt"
	"math"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/zmqmsg/zmqmsg/directory"
)

var cmdServers = &command{
	name:    "servers",
	args:    "[TOPIC]",
	summary: "list the servers and listeners the directory knows",
	doc: `Lists the live registrations of the directory: exchange, topic, server, the
node's endpoints (call, fanout, notify, cast), when the registration
expires unless refreshed (time and seconds left) and the methods the server
offers (a long list is cut short with "…"; "-", null in JSON, when the
server does not publish them: a notification listener, or an older node).
Notification listeners appear in the exchange "zmqmsg.notify", named
POOL/NODE#N. TOPIC keeps only that topic; --exchange (when given) keeps only
that exchange. Prints a table, or a JSON array with --json.`,
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
	Methods   []string          `json:"methods"` // null: not published
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
			CurveKey: e.Node.CurveKey, Methods: e.Methods,
		})
	}
	if c.g.json {
		return c.printValue(lines)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EXCHANGE\tTOPIC\tSERVER\tCALL\tFANOUT\tNOTIFY\tCAST\tCURVE\tEXPIRES\tMETHODS")
	for _, l := range lines {
		ex := l.Exchange
		if ex == "" {
			ex = "(default)"
		}
		curve := "-"
		if l.CurveKey != "" {
			curve = l.CurveKey[:min(8, len(l.CurveKey))] + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s (%.0fs)\t%s\n", ex, l.Topic, l.Server,
			dash(l.Endpoints["call"]), dash(l.Endpoints["fanout"]), dash(l.Endpoints["notify"]), dash(l.Endpoints["cast"]),
			curve, l.Expires.Local().Format(time.TimeOnly), l.ExpiresIn, methodsCell(l.Methods, maxMethodsCell))
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

// maxMethodsCell bounds the METHODS column of the servers table, in
// characters.
const maxMethodsCell = 48

// methodsCell joins methods with commas for the table: "-" when they are
// not published (nil), and within width characters, the names that do not fit
// left out as ",…+N" (N of them).
func methodsCell(methods []string, width int) string {
	if methods == nil {
		return "-"
	}
	joined := strings.Join(methods, ",")
	if utf8.RuneCountInString(joined) <= width {
		return joined
	}
	var b strings.Builder
	for i, m := range methods {
		rest := fmt.Sprintf(",…+%d", len(methods)-i)
		sep := ""
		if i > 0 {
			sep = ","
		}
		if utf8.RuneCountInString(b.String()+sep+m)+utf8.RuneCountInString(rest) > width {
			if i == 0 {
				return fmt.Sprintf("…+%d", len(methods))
			}
			return b.String() + rest
		}
		b.WriteString(sep + m)
	}
	return b.String() // not reached: the whole list is longer than width
}
