package proxy

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/zmqmsg/zmqmsg/directory"
)

// ErrDuplicate is returned by Routes.Add for a server name already taken in
// its topic.
var ErrDuplicate = errors.New("proxy: duplicate server name")

// Routes is the proxy's routing table. It is read by the proxy loop on every
// request and changed when servers start or stop.
type Routes struct {
	mu     sync.RWMutex
	topics map[directory.Key]*topicRoute
}

type topicRoute struct {
	servers []Server
	byName  map[string]Server
	rr      atomic.Uint64
}

// Add routes key to srv.
func (r *Routes) Add(key directory.Key, srv Server) error {
	r.mu.Lock()
	defer r.mu.Unlock()
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
	// Copy on write: a reader holding the old slice is not disturbed.
	t.servers = append(t.servers[:len(t.servers):len(t.servers)], srv)
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
	r.mu.Lock()
	defer r.mu.Unlock()
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
	r.mu.RLock()
	defer r.mu.RUnlock()
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
	return t.servers[(t.rr.Add(1)-1)%n]
}

// All returns every local server of key (the slice must not be modified).
func (r *Routes) All(key directory.Key) []Server {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if t := r.topics[key]; t != nil {
		return t.servers
	}
	return nil
}

// Each calls fn for every (key, server) route.
func (r *Routes) Each(fn func(key directory.Key, srv Server)) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for key, t := range r.topics {
		for _, s := range t.servers {
			fn(key, s)
		}
	}
}
