package zmqmsg

import (
	"errors"
	"fmt"
	"os"
	"strings"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/engine"
	"github.com/zmqmsg/zmqmsg/internal/config"
)

// Security turns on CURVE (encryption and authentication, RFC 26) on
// every TCP socket of a Transport or of a node proxy daemon; it is
// documented in internal/config, where it is defined.
type Security = config.Security

// ErrBadKey: a Security key is not a valid CURVE key, or the public key
// does not belong to the secret key. The error never repeats a key.
var ErrBadKey = config.ErrBadKey

// Errors of a secured (or unsecured) Transport meeting the other kind of
// node, and of a refused key; see Security.
var (
	// ErrSecurityRequired: the node serving the target publishes a CURVE
	// key and this Transport has no Security. Nothing was sent.
	ErrSecurityRequired = engine.ErrSecurityRequired
	// ErrInsecureNode: this Transport has Security, and the node serving
	// the target publishes no CURVE key: a secured Transport never sends
	// in plaintext. Nothing was sent.
	ErrInsecureNode = engine.ErrInsecureNode
	// ErrUnauthorized: the node refused this Transport's CURVE key. The
	// error is a *HandshakeError; requests waiting on the node fail with it
	// at once, and new ones at the next handshake (libzmq retries with
	// backoff).
	ErrUnauthorized = engine.ErrUnauthorized
)

// HandshakeError names the node whose security handshake failed; it
// matches ErrUnauthorized.
type HandshakeError = engine.HandshakeError

// NewKeyPair returns a new CURVE key pair, Z85 text.
func NewKeyPair() (publicKey, secretKey string, err error) {
	if !zmq.HasCurve() {
		return "", "", fmt.Errorf("zmqmsg: this libzmq was built without CURVE")
	}
	pub, sec, err := zmq.NewCurveKeypair()
	if err != nil {
		return "", "", fmt.Errorf("zmqmsg: new CURVE key pair: %w", err)
	}
	return pub, sec, nil
}

// SetAllowedClients replaces the public keys allowed to connect to this
// node (the node's own key stays allowed): handshakes from now on are
// decided by the new list, connections already made stay. For a node
// without Security it returns ErrInvalidConfig; a bad key, ErrBadKey (and
// nothing changes).
func (t *Transport) SetAllowedClients(keys []string) error { return t.e.SetAllowedClients(keys) }

// SetAllowedClients replaces the public keys allowed to connect to the
// daemon's ports, like Transport.SetAllowedClients. zmqmsg-proxy calls it on
// SIGHUP with its --curve-allow file read again.
func (p *Proxy) SetAllowedClients(keys []string) error { return p.d.SetAllowedClients(keys) }

// ReadAllowedClients reads an allow file (one public key per line, blank
// lines and # comments ignored; not writable by group or others), as
// LoadSecurity does.
func ReadAllowedClients(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("zmqmsg: CURVE allow file: %w", err)
	}
	if st.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("%w: allow file %s has mode %#o: it must not be writable by group or others (chmod 644)", ErrBadKey, path, st.Mode().Perm())
	}
	return readKeys(path)
}

// PublicKeyOf returns the public key of a CURVE secret key (Z85).
func PublicKeyOf(secretKey string) (string, error) { return config.PublicKeyOf(secretKey) }

// LoadSecurity reads a node's Security from files, so that no key is ever
// on a command line:
//   - keyFile holds the node's secret key (Z85, 40 characters, on its own
//     line; lines starting with # are comments). Like an ssh key, it must
//     not be readable by group or others. The public key is derived.
//   - allowFile, if not "", lists the public keys of the allowed clients,
//     one per line (blank lines and # comments ignored).
//
// Errors name the file and line, never a key.
func LoadSecurity(keyFile, allowFile string) (*Security, error) {
	st, err := os.Stat(keyFile)
	if err != nil {
		return nil, fmt.Errorf("zmqmsg: CURVE key file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: key file %s has mode %#o: it must not be readable by group or others (chmod 600)", ErrBadKey, keyFile, st.Mode().Perm())
	}
	keys, err := readKeys(keyFile)
	if err != nil {
		return nil, err
	}
	if len(keys) != 1 {
		return nil, fmt.Errorf("%w: key file %s holds %d keys, want one secret key", ErrBadKey, keyFile, len(keys))
	}
	pub, err := PublicKeyOf(keys[0])
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", keyFile, err)
	}
	s := &Security{PublicKey: pub, SecretKey: keys[0]}
	if allowFile != "" {
		// Whoever can write it decides who gets in: checked like the key.
		if s.AllowedClients, err = ReadAllowedClients(allowFile); err != nil {
			return nil, err
		}
	}
	if _, err := s.Keys(); err != nil {
		return nil, fmt.Errorf("%s, %s: %w", keyFile, allowFile, err)
	}
	return s, nil
}

// readKeys returns the keys of a key file, one per line, checked.
func readKeys(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("zmqmsg: CURVE key file: %w", err)
	}
	var keys []string
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if _, err := config.DecodeKey(line); err != nil {
			return nil, fmt.Errorf("%w: %s line %d: %s", ErrBadKey, path, i+1, err.Error())
		}
		keys = append(keys, line)
	}
	return keys, nil
}

// WriteKeyFile creates a new key pair, writes its secret key to path (mode
// 0600; an existing file is never overwritten) and returns the public key,
// which is safe to share.
func WriteKeyFile(path string) (publicKey string, err error) {
	pub, sec, err := NewKeyPair()
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("zmqmsg: key file: %w", err)
	}
	_, werr := fmt.Fprintf(f, "# zmqmsg CURVE secret key; public key %s\n%s\n", pub, sec)
	if err := errors.Join(werr, f.Close()); err != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("zmqmsg: key file: %w", err)
	}
	return pub, nil
}
