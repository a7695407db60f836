package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/zmqmsg/zmqmsg"
)

// Every duration flag (as --help lists them) refuses a number without a
// unit and says which unit to add, on the command line and from the
// environment.
func TestDurationNeedsUnit(t *testing.T) {
	var help bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, noEnv, &bytes.Buffer{}, &help, nil); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	flags := regexp.MustCompile(`(?m)^  --([a-z-]+) duration$`).FindAllStringSubmatch(help.String(), -1)
	if len(flags) < 7 {
		t.Fatalf("duration flags in --help: %v\n%s", flags, help.String())
	}
	for _, m := range flags {
		var stderr bytes.Buffer
		code := run(context.Background(), []string{"--" + m[1], "5"}, noEnv, &bytes.Buffer{}, &stderr, nil)
		if code != 2 || !strings.Contains(stderr.String(), "use a unit: 5s") {
			t.Errorf("--%s 5: exit %d, %q", m[1], code, stderr.String())
		}
		env := "ZMQMSG_" + strings.ToUpper(strings.ReplaceAll(m[1], "-", "_"))
		stderr.Reset()
		lookup := func(k string) (string, bool) { return "2", k == env }
		code = run(context.Background(), nil, lookup, &bytes.Buffer{}, &stderr, nil)
		if code != 2 || !strings.Contains(stderr.String(), "use a unit: 2s") || !strings.Contains(stderr.String(), env) {
			t.Errorf("%s=2: exit %d, %q", env, code, stderr.String())
		}
	}
}

// A bad key file is reported under the flag that named it.
func TestCurveFlagErrors(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "node.key")
	if _, err := zmqmsg.WriteKeyFile(key); err != nil {
		t.Fatal(err)
	}
	writable := filepath.Join(dir, "writable")
	if err := os.WriteFile(writable, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(writable, 0o666); err != nil { // whatever the umask
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--curve-key", key, "--curve-allow", writable}, "--curve-allow " + writable + ": "},
		{[]string{"--curve-key", key, "--curve-allow", filepath.Join(dir, "none")}, "--curve-allow " + filepath.Join(dir, "none") + ": "},
		{[]string{"--curve-key", writable}, "--curve-key " + writable + ": "},
	} {
		var stderr bytes.Buffer
		if code := run(context.Background(), tc.args, noEnv, &bytes.Buffer{}, &stderr, nil); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, %q; want exit 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}
