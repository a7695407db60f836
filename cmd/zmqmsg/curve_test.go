package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg"
)

// keygen --public prints an existing key file's public key alone on one
// line, so that a real shell appends it to an allow file unchanged, even a
// key with a $ in it (which `echo "<key>" >> allowed` would corrupt).
func TestKeygenPublic(t *testing.T) {
	dir := t.TempDir()
	var key, pub string
	for i := 0; pub == "" || !strings.Contains(pub, "$"); i++ {
		if i == 50 {
			t.Fatal("50 keys without a $ in their public key")
		}
		key = filepath.Join(dir, "k"+string(rune('a'+i%26))+strings.Repeat("x", i/26)+".key")
		pub = strings.TrimSpace(mem(t, "keygen", key).want(t, 0).stdout)
	}
	if r := mem(t, "keygen", "--public", key).want(t, 0); r.stdout != pub+"\n" {
		t.Errorf("keygen --public: %q, want %q", r.stdout, pub)
	}
	if out := decode[map[string]string](t, mem(t, "keygen", "--public", "--json", key).want(t, 0).stdout); out["public_key"] != pub || out["file"] != key {
		t.Errorf("keygen --public --json: %v", out)
	}
	allow := filepath.Join(dir, "allowed")
	sh := shell(t, map[string]string{"KEY": key, "ALLOW": allow}, `zmqmsg keygen --public "$KEY" >> "$ALLOW" && zmqmsg keygen --public "$KEY" >> "$ALLOW"`)
	if code := sh.wait(t, testTimeout); code != 0 {
		t.Fatalf("shell exit %d: %s", code, sh.stderr.String())
	}
	keys, err := zmqmsg.ReadAllowedClients(allow)
	if err != nil || len(keys) != 2 || keys[0] != pub || keys[1] != pub {
		t.Fatalf("allow file holds %q (%v), want %q twice", keys, err, pub)
	}
	// Nothing is created; a file that is not a key file is an error.
	mem(t, "keygen", "--public", filepath.Join(dir, "none")).want(t, exitError)
	if _, err := os.Stat(filepath.Join(dir, "none")); !os.IsNotExist(err) {
		t.Errorf("keygen --public created its file: %v", err)
	}
}

// A bad key file is reported under the flag that named it.
func TestCurveFlagErrors(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "node.key")
	mem(t, "keygen", key).want(t, 0)
	writable := filepath.Join(dir, "writable")
	if err := os.WriteFile(writable, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(writable, 0o666); err != nil { // whatever the umask
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--curve-key", key, "--curve-allow", writable}, "--curve-allow " + writable + ": "},
		{[]string{"--curve-key", key, "--curve-allow", garbage}, "--curve-allow " + garbage + ": "},
		{[]string{"--curve-key", key, "--curve-allow", filepath.Join(dir, "none")}, "--curve-allow " + filepath.Join(dir, "none") + ": "},
		{[]string{"--curve-key", garbage}, "--curve-key " + garbage + ": "},
		{[]string{"--curve-key", writable}, "--curve-key " + writable + ": "},
	} {
		r := mem(t, append([]string{"call", "t-curve-flags", "m"}, tc.args...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, %q; want exit 2 and %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}

// A member that joins a CURVE daemon without --curve-key, or a daemon
// without CURVE with one, is told so in plain words.
func TestCurveDaemonMismatch(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "member.key")
	mem(t, "keygen", key).want(t, 0)
	pub, sec, err := zmqmsg.NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	for _, secured := range []bool{true, false} {
		ipc := t.TempDir()
		cfg := zmqmsg.ProxyConfig{Dir: ipc, Ports: zmqmsg.Ports{Call: zmqmsg.AnyPort}}
		args := []string{"listen", "--proxy-dir", ipc, "t-curve-daemon"}
		want := "this command needs --curve-key FILE"
		if secured {
			cfg.Security = &zmqmsg.Security{PublicKey: pub, SecretKey: sec}
		} else {
			args = append(args, "--curve-key", key)
			want = "run this command without --curve-key"
		}
		p, err := zmqmsg.StartProxy(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		r := mem(t, args...)
		if r.code != exitUndelivered || !strings.Contains(r.stderr, want) || time.Since(t0) > 5*time.Second {
			t.Errorf("CURVE daemon %v: exit %d after %v, %q; want exit 5 and %q", secured, r.code, time.Since(t0), r.stderr, want)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
