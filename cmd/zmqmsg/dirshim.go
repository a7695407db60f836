package main

// TEMPORARY: directory.Open is being written on branch redis-dir. Until it
// is merged, this shim opens "memory:" only (the process-wide
// directory.Shared). Delete this file after merging it.

import (
	"context"
	"fmt"

	"github.com/zmqmsg/zmqmsg/directory"
)

// openDirectory opens the directory at url.
func openDirectory(_ context.Context, url string) (directory.Directory, error) {
	if url != "memory:" {
		return nil, fmt.Errorf("directory %q: only memory: is supported until the Redis directory is merged", url)
	}
	return directory.Shared(), nil
}
