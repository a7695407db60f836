package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/zmqmsg/zmqmsg"
)

// closedRedis returns the URL of a Redis directory on a closed port.
func closedRedis(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "redis://" + l.Addr().String()
}

// exitTable parses exitCodesHelp: the codes it lists and the JSON error
// types of each.
func exitTable(t *testing.T) map[int][]string {
	t.Helper()
	types := map[int][]string{}
	code := -1
	row := regexp.MustCompile(`^  (\d)  `)
	for _, l := range strings.Split(exitCodesHelp, "\n") {
		if m := row.FindStringSubmatch(l); m != nil {
			code, _ = strconv.Atoi(m[1])
			types[code] = nil
		}
		if strings.HasPrefix(l, "With --json") {
			break
		}
		for _, m := range regexp.MustCompile(`\[([a-z_]+)\]`).FindAllStringSubmatch(l, -1) {
			if code < 0 {
				t.Fatalf("a type before the first code: %q", l)
			}
			types[code] = append(types[code], m[1])
		}
	}
	return types
}

// The exit codes table is one: zmqmsg --help, README.md and the package
// documentation show the same text; every code it lists is what the CLI
// returns in a real case, with the JSON type the table gives; and every
// type it lists is what classify makes of that kind of error.
func TestExitCodes(t *testing.T) {
	table := strings.TrimSpace(exitCodesHelp)
	if r := cliRun(t, nil, "", "--help").want(t, 0); !strings.Contains(r.stdout, exitCodesHelp) {
		t.Errorf("--help lacks the table:\n%s", r.stdout)
	}
	if r := cliRun(t, nil, "", "call", "--help").want(t, 0); !strings.Contains(r.stdout, exitCodesHelp) {
		t.Errorf("call --help lacks the table:\n%s", r.stdout)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```\n"+table+"\n```\n") {
		t.Errorf("README.md does not show the table of zmqmsg --help:\n%s", table)
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	var doc []string
	for _, l := range strings.Split(string(src), "\n") {
		if l == "package main" {
			break
		}
		if s, ok := strings.CutPrefix(l, "//\t"); ok && (len(doc) > 0 || strings.HasPrefix(s, "exit codes")) {
			doc = append(doc, s)
		}
	}
	if strings.Join(doc, "\n") != table {
		t.Errorf("the package documentation's table differs:\n%s", strings.Join(doc, "\n"))
	}

	types := exitTable(t)
	libServer(t, "t-codes", zmqmsg.Endpoints{
		"ok": func(context.Context, zmqmsg.Args) (any, error) { return 1, nil },
		"wait": func(ctx context.Context, _ zmqmsg.Args) (any, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		},
		"fail": func(context.Context, zmqmsg.Args) (any, error) { return nil, errors.New("it broke") },
	})
	key := t.TempDir() + "/k"
	mem(t, "keygen", key).want(t, 0)
	type exitCase struct {
		code int
		typ  string
		args []string
	}
	cases := []exitCase{
		{0, "", []string{"call", "t-codes", "ok"}},
		{1, "error", []string{"keygen", key}}, // never overwrites
		{2, "usage", []string{"call", "--bogus", "t-codes", "ok"}},
		{3, "timeout", []string{"call", "--timeout", "300ms", "t-codes", "wait"}},
		{4, "remote", []string{"call", "t-codes", "fail"}},
		{4, "no_such_method", []string{"fanout", "t-codes", "nope"}},
		{5, "no_servers", []string{"call", "--timeout", "1s", "t-codes-nobody", "m"}},
		{5, "unheard", []string{"notify", "t-codes-nobody", "e"}},
		{6, "directory_unavailable", []string{"call", "--directory", closedRedis(t), "t-codes", "ok"}},
	}
	for _, tc := range cases {
		r := mem(t, append([]string{"--json"}, tc.args...)...)
		if r.code != tc.code {
			t.Errorf("%v: exit %d, want %d: %s", tc.args, r.code, tc.code, r.stderr)
			continue
		}
		if _, ok := types[tc.code]; !ok {
			t.Errorf("%v: exit %d is not in the table", tc.args, r.code)
		}
		if tc.code == 0 {
			continue
		}
		e := decode[map[string]any](t, r.stderr)
		if e["type"] != tc.typ || e["exit"] != float64(tc.code) || !slices.Contains(types[tc.code], tc.typ) {
			t.Errorf("%v: JSON error %v; want type %q, listed under %d: %v", tc.args, e, tc.typ, tc.code, types[tc.code])
		}
	}
	for code := range types {
		if !slices.ContainsFunc(cases, func(c exitCase) bool { return c.code == code }) {
			t.Errorf("exit %d: no case returns it", code)
		}
	}
	// Every type classify returns is in the table.
	listed := map[string]bool{}
	for _, ts := range types {
		for _, typ := range ts {
			listed[typ] = true
		}
	}
	for _, m := range regexp.MustCompile(`return exit\w+, "(\w+)"`).FindAllStringSubmatch(string(src), -1) {
		if !listed[m[1]] {
			t.Errorf("classify returns type %q, which the table does not list", m[1])
		}
	}
	// The other types, from the errors that make them.
	kinds := map[string]error{
		"unreached":         zmqmsg.ErrUnreached,
		"unavailable":       &zmqmsg.UnavailableError{Node: "n", Cause: "refused"},
		"node_down":         &zmqmsg.NodeDownError{Node: "n", Cause: "gone"},
		"server_lost":       zmqmsg.ErrServerLost,
		"not_acked":         zmqmsg.ErrNotAcked,
		"not_delivered":     zmqmsg.ErrNotDelivered,
		"unauthorized":      zmqmsg.ErrUnauthorized,
		"security_mismatch": zmqmsg.ErrSecurityRequired,
	}
	for code, ts := range types {
		for _, typ := range ts {
			if slices.ContainsFunc(cases, func(c exitCase) bool { return c.typ == typ }) {
				continue
			}
			err, ok := kinds[typ]
			if !ok {
				t.Errorf("type %q (exit %d): no case makes it", typ, code)
				continue
			}
			if gc, gt := classify(fmt.Errorf("x: %w", err)); gc != code || gt != typ {
				t.Errorf("%v: exit %d (%s), the table says %d (%s)", err, gc, gt, code, typ)
			}
		}
	}
}
