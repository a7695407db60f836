package main

// TEMPORARY: directory.Open and directory.Lister are being written on
// branch redis-dir. Until they are merged, this shim opens "memory:" only
// (the process-wide directory.Shared) and lists it from the keys that the
// CLI's own nodes registered. Delete this file after merging redis-dir.

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zmqmsg/zmqmsg/directory"
)

// lister lists every live entry of a directory (directory.Lister on
// branch redis-dir).
type lister interface {
	List(ctx context.Context) ([]directory.Entry, error)
}

// shimKeys are the keys registered through any shimDir of this process.
var shimKeys = struct {
	sync.Mutex
	m map[directory.Key]bool
}{m: map[directory.Key]bool{}}

// shimDir is directory.Shared that remembers the keys registered through
// it, so that it can List them.
type shimDir struct{ *directory.Memory }

func (d shimDir) Register(ctx context.Context, r directory.Registration, ttl time.Duration) error {
	shimKeys.Lock()
	shimKeys.m[r.Key] = true
	shimKeys.Unlock()
	return d.Memory.Register(ctx, r, ttl)
}

func (d shimDir) List(ctx context.Context) ([]directory.Entry, error) {
	shimKeys.Lock()
	keys := make([]directory.Key, 0, len(shimKeys.m))
	for k := range shimKeys.m {
		keys = append(keys, k)
	}
	shimKeys.Unlock()
	slices.SortFunc(keys, func(a, b directory.Key) int {
		return cmp.Or(strings.Compare(a.Exchange, b.Exchange), strings.Compare(a.Topic, b.Topic))
	})
	var out []directory.Entry
	for _, k := range keys {
		es, err := d.Lookup(ctx, k)
		if err != nil {
			return nil, err
		}
		out = append(out, es...)
	}
	return out, nil
}

// openDirectory opens the directory at url.
func openDirectory(_ context.Context, url string) (directory.Directory, error) {
	if url != "memory:" {
		return nil, fmt.Errorf("directory %q: only memory: is supported until the Redis directory is merged", url)
	}
	return shimDir{directory.Shared()}, nil
}
