//go:build !linux

package poller

const netpollSupported = false

// newNetpollWaiter is never called where netpoll is unsupported: Start checks
// netpollSupported first.
func newNetpollWaiter() waiter { return nil }
