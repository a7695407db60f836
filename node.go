package zmqmsg

import (
	"fmt"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zmqmsg/zmqmsg/actors/socket"
)

// MinLibzmq is the oldest libzmq zmqmsg runs on: 4.3.3 fixed the
// CVE-2020-15166 family of remote memory exhaustion and overflow bugs.
var MinLibzmq = [3]int{4, 3, 3}

// ErrLibzmqTooOld: the linked libzmq is older than MinLibzmq.
var ErrLibzmqTooOld = fmt.Errorf("zmqmsg: libzmq too old (need %d.%d.%d or later)", MinLibzmq[0], MinLibzmq[1], MinLibzmq[2])

func checkLibzmq() error {
	major, minor, patch := zmq.Version()
	have := [3]int{major, minor, patch}
	for i := range have {
		if have[i] != MinLibzmq[i] {
			if have[i] < MinLibzmq[i] {
				return fmt.Errorf("%w: linked against %d.%d.%d", ErrLibzmqTooOld, major, minor, patch)
			}
			return nil
		}
	}
	return nil
}

// CloseFlush bounds how long Transport.Close (and a proxy daemon's Close)
// waits for messages libzmq has taken but not yet sent: replies and ACKs
// sent just before, direct casts still queued. Peers that are gone or do
// not read cannot hold Close longer than this.
const CloseFlush = 500 * time.Millisecond

// socketOptions turns the Config into the settings of every TCP socket.
func socketOptions(cfg Config) socket.Options {
	o := socket.Options{
		MaxMessageSize: int64(cfg.MaxMessageSize),
		// A node that went away is retried at 100 ms, backing off to 5 s:
		// libzmq's default (no backoff) would retry ten times a second forever.
		ReconnectInterval:    100 * time.Millisecond,
		ReconnectIntervalMax: 5 * time.Second,
		ConnectTimeout:       cfg.ConnectTimeout,
		// Close flushes what libzmq has taken but not sent (a reply, an ACK,
		// a direct cast handed over just before), for up to CloseFlush.
		Linger: CloseFlush,
	}
	if !cfg.Keepalive.Disabled {
		k := cfg.Keepalive
		o.KeepaliveIdle, o.KeepaliveInterval, o.KeepaliveCount = k.Idle, k.Interval, k.Count
		o.HeartbeatInterval, o.HeartbeatTimeout = k.HeartbeatInterval, k.HeartbeatTimeout
		o.HeartbeatTTL = k.HeartbeatTimeout
	}
	return o
}
