package envflag

import (
	"bytes"
	"flag"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestApply(t *testing.T) {
	env := map[string]string{"X_IPC_DIR": "/env", "X_PORT": "9", "X_WAIT": "bad"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	dir := fs.String("ipc-dir", "/def", "")
	port := fs.Int("port", 1, "")
	wait := fs.Duration("wait", time.Second, "")
	if err := fs.Parse([]string{"--port", "7", "--wait", "2s"}); err != nil {
		t.Fatal(err)
	}
	if err := Apply(fs, "X", lookup); err != nil {
		t.Fatal(err)
	}
	if *dir != "/env" || *port != 7 || *wait != 2*time.Second {
		t.Fatalf("dir %q port %d wait %v: the env must fill unset flags only", *dir, *port, *wait)
	}
	fs2 := flag.NewFlagSet("t", flag.ContinueOnError)
	fs2.Duration("wait", time.Second, "")
	_ = fs2.Parse(nil)
	if err := Apply(fs2, "X", lookup); err == nil || !strings.Contains(err.Error(), "X_WAIT") {
		t.Fatalf("bad env value: %v", err)
	}
}

func TestUsage(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var out bytes.Buffer
	fs.SetOutput(&out)
	fs.String("ipc-dir", "/run/x", "the `dir` of sockets")
	Usage(fs, "X", "header\n")()
	for _, want := range []string{"header", "--ipc-dir dir", "(default /run/x)", "env X_IPC_DIR"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, out.String())
		}
	}
}
