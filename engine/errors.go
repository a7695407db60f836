package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/zmqmsg/zmqmsg/actors/proxy"
)

// The engine's errors. The zmqmsg package re-exports each one under the
// same name and documents it there, once.
var (
	ErrClosed                     = errors.New("zmqmsg: closed")
	ErrNoServers                  = errors.New("zmqmsg: no servers for target")
	ErrTimeout              error = timeoutError{}
	ErrTooLarge                   = errors.New("zmqmsg: message too large")
	ErrOverloaded                 = errors.New("zmqmsg: server overloaded")
	ErrNoSuchMethod               = errors.New("zmqmsg: no such method")
	ErrInvalidTarget              = errors.New("zmqmsg: invalid target")
	ErrUnavailable                = errors.New("zmqmsg: node connection unavailable")
	ErrDirectoryUnavailable       = errors.New("zmqmsg: directory unavailable")
	ErrNodeDown                   = errors.New("zmqmsg: node down")
	ErrNotAcked                   = errors.New("zmqmsg: cast not acknowledged")
	ErrUnreached                  = errors.New("zmqmsg: node not reached")
	ErrNotDelivered               = errors.New("zmqmsg: notification not delivered to every pool")
	ErrSecurityRequired           = errors.New("zmqmsg: the node requires CURVE; this Transport has no Security")
	ErrInsecureNode               = errors.New("zmqmsg: the node publishes no CURVE key; refusing to send in plaintext")
	ErrUnauthorized               = errors.New("zmqmsg: the node refused this Transport's CURVE key")
	ErrNoProxy                    = proxy.ErrNoDaemon
	ErrDaemonRunning              = errors.New("zmqmsg: another node proxy daemon is running in this directory")
)

type timeoutError struct{}

func (timeoutError) Error() string { return "zmqmsg: call timed out" }

// Is makes ErrTimeout match context.DeadlineExceeded.
func (timeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// Timeout reports true, like net.Error.
func (timeoutError) Timeout() bool { return true }

// RemoteError is a handler's error as seen by the caller.
type RemoteError struct {
	// Type is the error's type on the server: the handler error's
	// ErrorType() string if it has that method, else its Go type, e.g.
	// "*errors.errorString"; "NoSuchMethod" for an unknown method and
	// "panic" for a handler that panicked.
	Type string
	// Message is the error's text on the server.
	Message string
}

// Error implements error.
func (e *RemoteError) Error() string {
	return fmt.Sprintf("zmqmsg: remote error %s: %s", e.Type, e.Message)
}

// Is lets errors.Is(err, ErrNoSuchMethod) recognise an unknown method.
func (e *RemoteError) Is(target error) bool {
	return target == ErrNoSuchMethod && e.Type == remoteTypeNoSuchMethod
}

const (
	remoteTypeNoSuchMethod = "NoSuchMethod"
	remoteTypePanic        = "panic"
)

// remoteType names err's type for a RemoteError.
func remoteType(err error) string {
	var typed interface{ ErrorType() string }
	if errors.As(err, &typed) {
		return typed.ErrorType()
	}
	return fmt.Sprintf("%T", err)
}

// nodeError is what the errors that name a node share: the node's id
// (host:port) and what was seen (never a key).
type nodeError struct {
	Node  string
	Cause string
}

func (e *nodeError) text(what string) string {
	return fmt.Sprintf("zmqmsg: node %s%s: %s", e.Node, what, e.Cause)
}

// UnavailableError fails a request that was never handed to a node's
// connection: the node could not be connected to (refused, unreachable,
// connect timeout). It matches ErrUnavailable; the request did not run.
type UnavailableError nodeError

func (e *UnavailableError) Error() string { return (*nodeError)(e).text(" unavailable (not sent)") }

// Is makes an *UnavailableError match ErrUnavailable.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// NodeDownError fails the requests that were waiting on a node's
// connection when it was lost. It matches ErrNodeDown.
type NodeDownError nodeError

func (e *NodeDownError) Error() string { return (*nodeError)(e).text(" down") }

// Is makes a *NodeDownError match ErrNodeDown.
func (e *NodeDownError) Is(target error) bool { return target == ErrNodeDown }

// HandshakeError names the node whose security handshake failed; it
// matches ErrUnauthorized.
type HandshakeError nodeError

func (e *HandshakeError) Error() string { return (*nodeError)(e).text("") }

// Is lets errors.Is(err, ErrUnauthorized) recognise it.
func (e *HandshakeError) Is(target error) bool { return target == ErrUnauthorized }

// FanoutError lists the nodes a fanout did not reach. The nodes not listed
// got it. errors.Is(err, ErrUnreached) is true.
type FanoutError struct {
	Unreached map[string]error // node id -> why
}

func (e *FanoutError) Error() string { return failures(ErrUnreached, e.Unreached, "%s (%v)") }

// Is matches ErrUnreached.
func (e *FanoutError) Is(target error) bool { return target == ErrUnreached }

// NotifyError lists the pools a notification did not reach.
type NotifyError struct {
	Pools map[string]error // pool -> why (the last member's error)
}

func (e *NotifyError) Error() string { return failures(ErrNotDelivered, e.Pools, "pool %q (%v)") }

// Is matches ErrNotDelivered.
func (e *NotifyError) Is(target error) bool { return target == ErrNotDelivered }

// failures is the text of a partial failure: sentinel, then each name and
// its error, sorted, as format puts them.
func failures(sentinel error, m map[string]error, format string) string {
	items := make([]string, 0, len(m))
	for name, err := range m {
		items = append(items, fmt.Sprintf(format, name, err))
	}
	sort.Strings(items)
	return fmt.Sprintf("%v: %s", sentinel, strings.Join(items, ", "))
}
