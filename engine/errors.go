package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/zmqmsg/zmqmsg/actors/proxy"
)

// Errors returned by the engine; the zmqmsg package re-exports them.
var (
	// ErrClosed: the Transport (or the Server) is closed.
	ErrClosed = errors.New("zmqmsg: closed")
	// ErrNoServers: no server serves the target (none registered, or the
	// named server is unknown), after waiting Config.WaitForServers.
	ErrNoServers = errors.New("zmqmsg: no servers for target")
	// ErrTimeout: the call's deadline passed before its reply came.
	// errors.Is(ErrTimeout, context.DeadlineExceeded) is true.
	ErrTimeout error = timeoutError{}
	// ErrTooLarge: a message is over Config.MaxMessageSize; nothing was sent.
	ErrTooLarge = errors.New("zmqmsg: message too large")
	// ErrOverloaded: the server's queue was full; the request did not run.
	ErrOverloaded = errors.New("zmqmsg: server overloaded")
	// ErrNoSuchMethod: the server has no endpoint for the method. The caller
	// sees it as a *RemoteError that matches ErrNoSuchMethod with errors.Is.
	ErrNoSuchMethod = errors.New("zmqmsg: no such method")
	// ErrInvalidTarget: a target without a topic, or with fields over the
	// wire limits.
	ErrInvalidTarget = errors.New("zmqmsg: invalid target")
	// ErrUnavailable: the connection to the node that serves the target is
	// being re-established; the request was not sent.
	ErrUnavailable = errors.New("zmqmsg: node connection unavailable")
	// ErrDirectoryUnavailable: the directory could not be read and nothing
	// about the target is cached; nothing was sent. It is not
	// ErrNoServers: nobody knows whether the target has servers.
	ErrDirectoryUnavailable = errors.New("zmqmsg: directory unavailable")
	// ErrNodeDown: the connection to the request's node was lost while the
	// request waited for its answer (the node died, its link was cut, a
	// heartbeat timed out). The error is a *NodeDownError. A CALL may or
	// may not have run.
	ErrNodeDown = errors.New("zmqmsg: node down")
	// ErrSecurityRequired: the node serving the target publishes a CURVE
	// key (it accepts only CURVE clients) and this Transport has no
	// Security configured. Nothing was sent.
	ErrSecurityRequired = errors.New("zmqmsg: the node requires CURVE; this Transport has no Security")
	// ErrInsecureNode: this Transport has Security on, and the node serving
	// the target publishes no CURVE key; a secured Transport never sends
	// in plaintext. Nothing was sent.
	ErrInsecureNode = errors.New("zmqmsg: the node publishes no CURVE key; refusing to send in plaintext")
	// ErrUnauthorized: the node refused this Transport's CURVE key (it is
	// not in the node's allowed client keys), or the security handshake
	// with it failed. Requests waiting on that node fail with it at once.
	ErrUnauthorized = errors.New("zmqmsg: the node refused this Transport's CURVE key")
	// ErrNoProxy: Config.ProxyDir names a directory where no node proxy
	// daemon answers.
	ErrNoProxy = proxy.ErrNoDaemon
)

// HandshakeError names the node whose security handshake failed; it
// matches ErrUnauthorized.
type HandshakeError struct {
	Node  string // the node's id, host:port
	Cause string // what failed; never a key
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("zmqmsg: node %s: %s", e.Node, e.Cause)
}

// Is lets errors.Is(err, ErrUnauthorized) recognise it.
func (e *HandshakeError) Is(target error) bool { return target == ErrUnauthorized }

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

// UnavailableError fails a request that was never handed to a node's
// connection: the node could not be connected to (refused, unreachable,
// connect timeout). It matches ErrUnavailable; the request did not run.
type UnavailableError struct {
	Node  string // the node's id, host:port
	Cause string // what was seen
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("zmqmsg: node %s unavailable (not sent): %s", e.Node, e.Cause)
}

// Is makes an *UnavailableError match ErrUnavailable.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// NodeDownError fails the requests that were waiting on a node's
// connection when it was lost. It matches ErrNodeDown with errors.Is.
type NodeDownError struct {
	Node  string // the node's id, host:port
	Cause string // what was seen
}

func (e *NodeDownError) Error() string {
	return fmt.Sprintf("zmqmsg: node %s down: %s", e.Node, e.Cause)
}

// Is makes a *NodeDownError match ErrNodeDown.
func (e *NodeDownError) Is(target error) bool { return target == ErrNodeDown }
