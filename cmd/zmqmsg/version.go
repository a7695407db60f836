package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"

	zmq "github.com/pebbe/zmq4"
)

var cmdVersion = &command{
	name:    "version",
	args:    "",
	summary: "print the version, VCS commit, Go and libzmq versions (also --version)",
	doc: `Prints the module version and VCS commit the binary was built from (as Go
recorded them; "(devel)" and "unknown" when it recorded none), the Go
version and the libzmq version it runs with. With --json, one JSON object.`,
	maxArgs: 0,
	run:     runVersion,
}

// buildVersion is what version prints.
type buildVersion struct {
	Version  string `json:"version"`
	Commit   string `json:"commit"`
	Time     string `json:"commit_time,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
	Libzmq   string `json:"libzmq"`
}

// readVersion reads the binary's build information.
func readVersion() buildVersion {
	major, minor, patch := zmq.Version()
	v := buildVersion{Version: "unknown", Commit: "unknown", Go: runtime.Version(), Libzmq: fmt.Sprintf("%d.%d.%d", major, minor, patch)}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	v.Version = bi.Main.Version
	if v.Version == "" {
		v.Version = "(devel)"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func runVersion(_ context.Context, c *cli, _ []string) error {
	v := readVersion()
	if c.g.json {
		return c.printValue(v)
	}
	commit := v.Commit
	if v.Time != "" {
		commit += " (" + v.Time + ")"
	}
	if v.Modified {
		commit += ", modified"
	}
	_, err := fmt.Fprintf(c.stdout, "zmqmsg %s\ncommit %s\n%s, libzmq %s\n", v.Version, commit, v.Go, v.Libzmq)
	return err
}
