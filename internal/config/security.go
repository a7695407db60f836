package config

import (
	"errors"
	"fmt"
	"log/slog"

	zmq "github.com/pebbe/zmq4"
)

// ErrBadKey: a Security key is not a valid CURVE key, or the public key
// does not belong to the secret key. The error never repeats a key.
var ErrBadKey = errors.New("zmqmsg: bad CURVE key")

// Security turns on CURVE (ZeroMQ's elliptic-curve encryption and
// authentication, RFC 26) on every TCP socket of a Transport or of a node
// proxy daemon.
//
// With Security set:
//   - the node's ports are CURVE servers with this key pair, and the node
//     publishes PublicKey in the directory (directory.Node.CurveKey), where
//     clients find it;
//   - a ZAP handler in the Transport's own zmq context accepts exactly the
//     clients whose public key is in AllowedClients (or is this node's own
//     PublicKey); a peer without CURVE, or with another key, is refused
//     during the handshake, counted (Stats.HandshakeFailures,
//     Stats.AuthDenied) and logged with its address, never a key;
//   - every socket to another node is a CURVE client of the key that node
//     published; a node that publishes no key is refused (ErrInsecureNode):
//     a secured Transport never sends in plaintext.
//
// A Transport without Security refuses to send to a node that publishes a
// key (ErrSecurityRequired). The IPC sockets between a proxy daemon and its
// service processes stay plaintext: they are local, in a 0700 directory.
//
// Keys are Z85 text, 40 characters (NewKeyPair). Neither String nor any log
// line or error of zmqmsg shows SecretKey.
type Security struct {
	// PublicKey and SecretKey are this node's long-term key pair.
	PublicKey, SecretKey string
	// AllowedClients are the public keys of the nodes allowed to connect.
	// This node's own PublicKey is always allowed, so that nodes sharing
	// one cluster key pair need no list.
	AllowedClients []string
}

// String shows the public key and how many clients are allowed, never the
// secret key.
func (s Security) String() string {
	return fmt.Sprintf("Security{PublicKey: %s, SecretKey: [redacted], AllowedClients: %d}", s.PublicKey, len(s.AllowedClients))
}

// GoString keeps the secret key out of %#v.
func (s Security) GoString() string { return s.String() }

// LogValue keeps the secret key out of structured logs.
func (s Security) LogValue() slog.Value {
	return slog.GroupValue(slog.String("public_key", s.PublicKey), slog.Int("allowed_clients", len(s.AllowedClients)))
}

// Key is a CURVE key in binary.
type Key [32]byte

// Keys checks s and returns the client keys its node allows: its own
// public key first, then AllowedClients. A nil s has none, and no error.
func (s *Security) Keys() ([]Key, error) {
	if s == nil {
		return nil, nil
	}
	pub, err := DecodeKey(s.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: PublicKey: %s", ErrBadKey, err.Error())
	}
	derived, err := PublicKeyOf(s.SecretKey)
	if err != nil {
		return nil, err
	}
	if derived != s.PublicKey {
		return nil, fmt.Errorf("%w: PublicKey does not belong to SecretKey", ErrBadKey)
	}
	allowed := []Key{pub}
	for i, k := range s.AllowedClients {
		key, err := DecodeKey(k)
		if err != nil {
			return nil, fmt.Errorf("%w: AllowedClients[%d]: %s", ErrBadKey, i, err.Error())
		}
		allowed = append(allowed, key)
	}
	return allowed, nil
}

// PublicKeyOf returns the public key of a CURVE secret key (Z85).
func PublicKeyOf(secretKey string) (string, error) {
	if _, err := DecodeKey(secretKey); err != nil {
		return "", fmt.Errorf("%w: secret key: %s", ErrBadKey, err.Error())
	}
	pub, err := zmq.AuthCurvePublic(secretKey)
	if err != nil {
		return "", fmt.Errorf("%w: secret key: %w", ErrBadKey, err)
	}
	return pub, nil
}

// ValidKey reports whether k is a CURVE key in Z85 text (40 characters).
func ValidKey(k string) bool {
	_, err := DecodeKey(k)
	return err == nil
}

// z85 is the Z85 alphabet (ZeroMQ RFC 32).
const z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"

var z85Value = func() (v [256]int8) {
	for i := range v {
		v[i] = -1
	}
	for i := 0; i < len(z85); i++ {
		v[z85[i]] = int8(i)
	}
	return v
}()

// DecodeKey decodes a CURVE key from Z85 text. It checks every character
// (libzmq's decoder, and so pebbe's, do not report bad input), and its
// errors never repeat the key.
func DecodeKey(k string) (Key, error) {
	var key Key
	if len(k) != 40 {
		return key, fmt.Errorf("a CURVE key is 40 characters of Z85, not %d", len(k))
	}
	for i := 0; i < 40; i += 5 {
		var v uint64
		for j := i; j < i+5; j++ {
			d := z85Value[k[j]]
			if d < 0 {
				return key, fmt.Errorf("a CURVE key has a character outside Z85 at %d", j)
			}
			v = v*85 + uint64(d)
		}
		if v > 0xFFFFFFFF {
			return key, fmt.Errorf("a CURVE key has an out-of-range group at %d", i)
		}
		o := i / 5 * 4
		key[o], key[o+1], key[o+2], key[o+3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
	}
	return key, nil
}
