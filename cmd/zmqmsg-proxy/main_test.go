package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func noEnv(string) (string, bool) { return "", false }

// start runs the daemon in the background on free ports; cancel stops it
// like SIGTERM would. It returns the node and a func that waits for the
// exit code.
func start(t *testing.T, args []string, env func(string) (string, bool)) (context.CancelFunc, directory.Node, func() int, *testutil.LogBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan directory.Node, 1)
	code := make(chan int, 1)
	var stderr testutil.LogBuffer
	base := []string{"--call-port", "0", "--fanout-port", "0", "--notify-port", "0", "--cast-port", "0", "--ipc-dir", filepath.Join(t.TempDir(), "ipc")}
	go func() { code <- run(ctx, append(base, args...), env, &bytes.Buffer{}, &stderr, ready) }()
	select {
	case n := <-ready:
		return cancel, n, func() int { return <-code }, &stderr
	case c := <-code:
		cancel()
		t.Fatalf("daemon exited %d before serving: %s", c, stderr.String())
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("daemon not ready within 10s")
	}
	return nil, directory.Node{}, nil, nil
}

func TestDaemonServesAndDrainsOnSignal(t *testing.T) {
	ipc := filepath.Join(t.TempDir(), "ipc")
	stop, node, wait, stderr := start(t, []string{"--ipc-dir", ipc, "--log-format", "json"}, noEnv)
	dir := directory.NewMemory()
	defer dir.Close()
	svc, err := zmqmsg.New(zmqmsg.Config{Directory: dir, ProxyDir: ipc})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if svc.Node() != node {
		t.Fatalf("service node %v, daemon %v", svc.Node(), node)
	}
	if _, err := svc.Serve(zmqmsg.Target{Topic: "echo"}, zmqmsg.Endpoints{"echo": func(ctx context.Context, a zmqmsg.Args) (any, error) { return a.Raw(), nil }}); err != nil {
		t.Fatal(err)
	}
	cl, err := zmqmsg.New(zmqmsg.Config{Directory: dir, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []byte
	if err := cl.Client(zmqmsg.Target{Topic: "echo"}).Call(ctx, "echo", []byte("hi"), &got); err != nil || string(got) != "hi" {
		t.Fatalf("call through the daemon: %q, %v", got, err)
	}
	stop()
	if c := wait(); c != 0 {
		t.Fatalf("exit %d after the signal: %s", c, stderr.String())
	}
	for _, want := range []string{`"msg":"node proxy serving"`, `"msg":"draining"`, `"msg":"stopped"`, `"relayed":1`} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, stderr.String())
		}
	}
}

func TestDaemonRefusesBadSettings(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		code int
		want string
	}{
		{[]string{"--bogus"}, nil, 2, "flag provided but not defined"},
		{[]string{"extra"}, nil, 2, "unexpected argument"},
		{[]string{"--ipc-mode", "0644"}, nil, 2, "--ipc-mode"},
		{[]string{"--log-level", "loud"}, nil, 2, "--log-level"},
		{[]string{"--call-port", "70000"}, nil, 2, "--call-port 70000"},
		{nil, map[string]string{"ZMQMSG_MEMBER_TTL": "soon"}, 2, "ZMQMSG_MEMBER_TTL"},
		{[]string{"--member-ttl", "1s"}, nil, 2, "--member-ttl"},
		{[]string{"--host", "0.0.0.0"}, nil, 2, "not a wildcard"},
	} {
		var stderr bytes.Buffer
		env := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
		code := run(context.Background(), tc.args, env, &bytes.Buffer{}, &stderr, nil)
		if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v %v: exit %d, stderr %q; want %d and %q", tc.args, tc.env, code, stderr.String(), tc.code, tc.want)
		}
	}
}

func TestDaemonTakenPortAndHelp(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"--call-port", port, "--fanout-port", "0", "--notify-port", "0", "--cast-port", "0", "--ipc-dir", filepath.Join(t.TempDir(), "ipc")}, noEnv, &bytes.Buffer{}, &stderr, nil)
	if code != 1 || !strings.Contains(stderr.String(), "cannot start") || !strings.Contains(stderr.String(), port) {
		t.Fatalf("taken port: exit %d, %q", code, stderr.String())
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"--help"}, noEnv, &bytes.Buffer{}, &stderr, nil); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, want := range []string{"--ipc-dir directory", "env ZMQMSG_IPC_DIR", "--drain-timeout", "(default 9501)"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestDaemonEnvironment(t *testing.T) {
	ipc := filepath.Join(t.TempDir(), "from-env")
	env := func(k string) (string, bool) {
		if k == "ZMQMSG_IPC_DIR" {
			return ipc, true
		}
		if k == "ZMQMSG_HOST" {
			return "127.0.0.2", true
		}
		return "", false
	}
	// start passes --ipc-dir on the command line, which beats the env; the
	// host comes from the env.
	stop, node, wait, _ := start(t, nil, env)
	defer func() { stop(); wait() }()
	if node.Host != "127.0.0.2" {
		t.Fatalf("host %q, want 127.0.0.2 from ZMQMSG_HOST", node.Host)
	}
}

// --curve-key: the daemon's ports take only CURVE clients whose key the
// --curve-allow file lists, and its members must be secured too.
func TestDaemonCurve(t *testing.T) {
	dir := t.TempDir()
	daemonKey, svcKey := filepath.Join(dir, "daemon.key"), filepath.Join(dir, "svc.key")
	svcPub, err := zmqmsg.WriteKeyFile(svcKey)
	if err != nil {
		t.Fatal(err)
	}
	daemonPub, err := zmqmsg.WriteKeyFile(daemonKey)
	if err != nil {
		t.Fatal(err)
	}
	allow := filepath.Join(dir, "allowed")
	if err := os.WriteFile(allow, []byte(svcPub+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ipc := filepath.Join(dir, "ipc")
	stop, node, wait, stderr := start(t, []string{"--ipc-dir", ipc, "--curve-key", daemonKey, "--curve-allow", allow}, noEnv)
	defer func() {
		stop()
		if c := wait(); c != 0 {
			t.Errorf("exit %d: %s", c, stderr.String())
		}
	}()
	if node.CurveKey != daemonPub {
		t.Fatalf("daemon node %+v: want its public key", node)
	}
	sec, err := zmqmsg.LoadSecurity(svcKey, "")
	if err != nil {
		t.Fatal(err)
	}
	mdir := directory.NewMemory()
	defer mdir.Close()
	svc, err := zmqmsg.New(zmqmsg.Config{Directory: mdir, ProxyDir: ipc, Security: sec})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if _, err := svc.Serve(zmqmsg.Target{Topic: "echo"}, zmqmsg.Endpoints{"echo": func(ctx context.Context, a zmqmsg.Args) (any, error) { return a.Raw(), nil }}); err != nil {
		t.Fatal(err)
	}
	// The service's own key is listed: it can call the daemon's node.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []byte
	if err := svc.Client(zmqmsg.Target{Topic: "echo"}).Call(ctx, "echo", []byte("hi"), &got); err != nil || string(got) != "hi" {
		t.Fatalf("secured call through the daemon: %q, %v", got, err)
	}
	// Another node's key is refused until the allow file lists it and the
	// daemon is told to reload (SIGHUP in main).
	otherPub, otherSec, err := zmqmsg.NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	other, err := zmqmsg.New(zmqmsg.Config{Directory: mdir, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort},
		Security: &zmqmsg.Security{PublicKey: otherPub, SecretKey: otherSec}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	callOther := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return other.Client(zmqmsg.Target{Topic: "echo"}).Call(ctx, "echo", []byte("hi"), nil)
	}
	if err := callOther(); !errors.Is(err, zmqmsg.ErrUnauthorized) {
		t.Fatalf("an unlisted key: %v, want ErrUnauthorized", err)
	}
	if err := os.WriteFile(allow, []byte(svcPub+"\n"+otherPub+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	deadline := time.Now().Add(15 * time.Second)
	for callOther() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the key listed by the reload was still refused; logs:\n%s", stderr.String())
		}
	}
	if !strings.Contains(stderr.String(), "allowed client keys reloaded") {
		t.Fatalf("the reload was not logged:\n%s", stderr.String())
	}
	daemonSec, err := zmqmsg.LoadSecurity(daemonKey, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{daemonSec.SecretKey, sec.SecretKey, otherSec} {
		if strings.Contains(stderr.String(), k) {
			t.Fatal("the daemon logged a secret key")
		}
	}
	// A key file others can read is refused.
	if err := os.Chmod(daemonKey, 0o644); err != nil {
		t.Fatal(err)
	}
	var errOut bytes.Buffer
	if code := run(context.Background(), []string{"--curve-key", daemonKey}, noEnv, &bytes.Buffer{}, &errOut, nil); code != 2 || !strings.Contains(errOut.String(), "chmod 600") {
		t.Fatalf("a readable key file: exit %d, %q", code, errOut.String())
	}
}
