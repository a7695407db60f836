package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	zmq "github.com/pebbe/zmq4"
)

// printVersion prints the module version and VCS commit the binary was
// built from ("(devel)" and "unknown" when Go recorded none), the Go
// version and the libzmq version.
func printVersion(w io.Writer) {
	major, minor, patch := zmq.Version()
	version, commit := "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		version = bi.Main.Version
		if version == "" {
			version = "(devel)"
		}
		var when, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.time":
				when = " (" + s.Value + ")"
			case "vcs.modified":
				if s.Value == "true" {
					modified = ", modified"
				}
			}
		}
		commit += when + modified
	}
	fmt.Fprintf(w, "zmqmsg-proxy %s\ncommit %s\n%s, libzmq %d.%d.%d\n", version, commit, runtime.Version(), major, minor, patch)
}
