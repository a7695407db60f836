package main

import (
	"flag"
	"strings"
	"testing"
	"time"
)

// Every duration flag of every command refuses a number without a unit
// and says which unit to add, on the command line and from the
// environment.
func TestDurationNeedsUnit(t *testing.T) {
	seen := 0
	for _, cmd := range commands {
		c := &cli{cmd: cmd}
		c.flagSet().VisitAll(func(f *flag.Flag) {
			g, ok := f.Value.(flag.Getter)
			if !ok {
				return
			}
			if _, ok := g.Get().(time.Duration); !ok {
				return
			}
			seen++
			args := append(strings.Fields(cmd.name), "--"+f.Name, "5")
			r := cliRun(t, nil, "", args...)
			if r.code != exitUsage || !strings.Contains(r.stderr, "use a unit: 5s") || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("%v: exit %d, %q; want exit 2 and \"use a unit: 5s\"", args, r.code, r.stderr)
			}
			env := map[string]string{envName(f.Name): "1.5"}
			r = cliRun(t, env, "", strings.Fields(cmd.name)...)
			if r.code != exitUsage || !strings.Contains(r.stderr, "use a unit: 1.5s") || !strings.Contains(r.stderr, envName(f.Name)) {
				t.Errorf("%s %v: exit %d, %q; want exit 2 and \"use a unit: 1.5s\"", cmd.name, env, r.code, r.stderr)
			}
		})
	}
	if seen < 6 { // --timeout everywhere, --ttl, --work, --duration, --drain
		t.Fatalf("only %d duration flags found", seen)
	}
	// Still refused with a hint: a word.
	r := cliRun(t, nil, "", "call", "--timeout", "soon", "t", "m").want(t, exitUsage)
	if !strings.Contains(r.stderr, "with a unit, such as 500ms") {
		t.Errorf("--timeout soon: %q", r.stderr)
	}
	// And the help calls them durations.
	r = cliRun(t, nil, "", "help", "bench", "client").want(t, 0)
	if !strings.Contains(r.stdout, "--duration duration") || !strings.Contains(r.stdout, "--timeout duration") || !strings.Contains(r.stdout, "(default 10s)") {
		t.Errorf("help bench client:\n%s", r.stdout)
	}
}
