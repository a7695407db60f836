package zmqmsg

import "github.com/zmqmsg/zmqmsg/engine"

// MinLibzmq is the oldest libzmq zmqmsg runs on: 4.3.3 fixed the
// CVE-2020-15166 family of remote memory exhaustion and overflow bugs.
var MinLibzmq = engine.MinLibzmq

// ErrLibzmqTooOld: the linked libzmq is older than MinLibzmq.
var ErrLibzmqTooOld = engine.ErrLibzmqTooOld
