package proxy

import (
	"errors"
	"fmt"

	"github.com/zmqmsg/zmqmsg/directory"
)

// ErrDuplicate is returned by Routes.Add for a server name already taken in
// its topic.
var ErrDuplicate = errors.New("proxy: duplicate server name")

// Routes is a routing table: the local servers of each (exchange, topic).
// It is not safe for concurrent use: a Proxy's table belongs to its loop,
// and other goroutines change it with commands (Attach, Detach, Forget).
// The zero value is an empty table.
type Routes struct {
	topics map[directory.Key]*topicRoute
}

type topicRoute struct {
	servers []Server          // in the round robin
	byName  map[string]Server // routed by name: servers, and the retired ones
	rr      uint64            // picks so far
}

// Add routes key to srv.
func (r *Routes) Add(key directory.Key, srv Server) error {
	if r.topics == nil {
		r.topics = make(map[directory.Key]*topicRoute)
	}
	t := r.topics[key]
	if t == nil {
		t = &topicRoute{byName: make(map[string]Server)}
		r.topics[key] = t
	}
	if _, ok := t.byName[srv.Name()]; ok {
		return fmt.Errorf("%w: %q in %s", ErrDuplicate, srv.Name(), key)
	}
	t.byName[srv.Name()] = srv
	t.servers = append(t.servers, srv)
	return nil
}

// Remove stops routing key to srv.
func (r *Routes) Remove(key directory.Key, srv Server) { r.drop(key, srv, true) }

// Retire takes srv out of key's round robin but still routes requests that
// name it: the resends of the casts it is running reach it (and are
// answered IN_PROGRESS or acknowledged again) while it drains. Remove it
// when it has.
func (r *Routes) Retire(key directory.Key, srv Server) { r.drop(key, srv, false) }

func (r *Routes) drop(key directory.Key, srv Server, byName bool) {
	t := r.topics[key]
	if t == nil || t.byName[srv.Name()] != srv {
		return
	}
	if byName {
		delete(t.byName, srv.Name())
	}
	servers := make([]Server, 0, len(t.servers))
	for _, s := range t.servers {
		if s != srv {
			servers = append(servers, s)
		}
	}
	t.servers = servers
	if len(t.byName) == 0 {
		delete(r.topics, key)
	}
}

// Pick returns the server for a request to key (and name, if not empty), or
// nil if this node has none.
func (r *Routes) Pick(key directory.Key, name string) Server {
	t := r.topics[key]
	if t == nil {
		return nil
	}
	if name != "" {
		return t.byName[name]
	}
	n := uint64(len(t.servers))
	if n == 0 {
		return nil
	}
	t.rr++
	return t.servers[(t.rr-1)%n]
}

// All returns every server of key in the round robin (the slice must not
// be modified).
func (r *Routes) All(key directory.Key) []Server {
	if t := r.topics[key]; t != nil {
		return t.servers
	}
	return nil
}

// Each calls fn for every (key, server) in the round robin.
func (r *Routes) Each(fn func(key directory.Key, srv Server)) {
	for key, t := range r.topics {
		for _, s := range t.servers {
			fn(key, s)
		}
	}
}

// routeOp is a change to the routes.
type routeOp int

const (
	routeAdd    routeOp = iota + 1 // Routes.Add
	routeRetire                    // Routes.Retire
	routeRemove                    // Routes.Remove
)

// routeCmd changes the proxy's routes on its loop.
type routeCmd struct {
	op   routeOp
	key  directory.Key
	srv  Server
	done chan error // buffered 1
}

func (*routeCmd) isProxyCmd() {}

// apply makes the change to r.
func (c *routeCmd) apply(r *Routes) error {
	switch c.op {
	case routeAdd:
		return r.Add(c.key, c.srv)
	case routeRetire:
		r.Retire(c.key, c.srv)
	case routeRemove:
		r.Remove(c.key, c.srv)
	}
	return nil
}
