package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/zmqmsg/zmqmsg/internal/envflag"
)

// globals are the flags every command accepts.
type globals struct {
	directory  string
	host       string
	timeout    time.Duration
	exchange   string
	json       bool
	logLevel   string
	curveKey   string
	curveAllow string
}

// globalFlags names the flags that globals holds, for the help text.
var globalFlags = map[string]bool{
	"directory": true, "host": true, "timeout": true, "exchange": true, "json": true, "log-level": true,
	"curve-key": true, "curve-allow": true,
}

// options are the flags of the commands; each command registers only its
// own.
type options struct {
	server      string        // call, cast
	all         bool          // call: every server (scatter-gather)
	stall       time.Duration // call --all
	maxReplies  int           // call --all
	monitor     time.Duration // call: heartbeat interval (MonitorEvery)
	metricsAddr string        // bench server: /metrics
	pprofAddr   string        // bench server: /debug/pprof/
	direct      bool          // cast
	priority    string        // notify
	publisher   string        // notify
	pool        string        // listen, bench server
	priorities  string        // listen
	count       int64         // listen, bench client
	topic       string        // bench
	name        string        // bench server
	pattern     string        // bench client
	concurrency int           // bench client
	rate        float64       // bench client: messages per second, 0 = unbounded
	duration    time.Duration // bench client
	size        int           // bench client
	drain       time.Duration // bench client
	proxyDir    string        // listen, bench server
	ttl         time.Duration // listen, bench server: registration TTL
	journal     string        // bench server
	work        time.Duration // bench server: time a 'record' handler takes
	queue       int           // bench server: Config.ServerQueue (its lanes' size)
	public      bool          // keygen
	echo        bool          // reply
	value       string        // reply: --json
	command     string        // reply
}

// proxyDirFlag registers --proxy-dir and --ttl (listen, bench server).
func proxyDirFlag(fs *flag.FlagSet, o *options) {
	envflag.DurationVar(fs, &o.ttl, "ttl", 30*time.Second, "registration TTL: a server killed without deregistering leaves the directory after this long (refreshed every ttl/3)")
	fs.StringVar(&o.proxyDir, "proxy-dir", "", "join the node proxy daemon (zmqmsg-proxy) whose IPC sockets are in `DIR` instead of binding ports; --host is then ignored")
}

// command is one subcommand of the CLI.
type command struct {
	name    string // "call", "bench server"
	args    string // synopsis of the positional arguments
	summary string // one line for the overview
	doc     string // what it does, for its --help
	minArgs int
	maxArgs int // -1: no limit
	flags   func(fs *flag.FlagSet, o *options)
	run     func(ctx context.Context, c *cli, pos []string) error
	// serves: the command runs until stopped (listen, bench server), so
	// the directory's outage warnings are worth logging; a one-shot
	// command reports the outage as its error instead.
	serves bool
	// ownJSON: the command's own --json flag takes a value (reply), in
	// place of the global --json.
	ownJSON bool
}

// cli is one invocation: the parsed flags and the streams.
type cli struct {
	cmd    *command
	fs     *flag.FlagSet // parsed: see isSet
	g      globals
	o      options
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	log    *slog.Logger
	loud   atomic.Bool // the directory logs its outages at their level (see openDirectory)
}

var commands = []*command{
	cmdCall, cmdCast, cmdFanout, cmdNotify, cmdListen, cmdReply, cmdServers, cmdPing, cmdInfo, cmdStats, cmdKeygen, cmdBenchServer, cmdBenchClient, cmdVersion,
}

func findCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// flagSet returns the flag set of c's command: the global flags and its
// own, bound to c.g and c.o.
func (c *cli) flagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("zmqmsg "+c.cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported by run, help by printCommandHelp
	fs.StringVar(&c.g.directory, "directory", "redis://127.0.0.1:6379", "directory `URL`: redis://[user:password@]host[:port][/db], rediss://, redis+sentinel://host,host/master[/db], redis+cluster://host,host; or memory: (the in-process directory, for tests)")
	fs.StringVar(&c.g.host, "host", "127.0.0.1", "`address` of the CLI's own node (it binds free ports on it)")
	envflag.DurationVar(fs, &c.g.timeout, "timeout", 10*time.Second, "deadline of each call, cast, fanout or notification (also bounds directory operations)")
	fs.StringVar(&c.g.exchange, "exchange", "", "exchange (namespace) of the topic; empty is the default exchange")
	if !c.cmd.ownJSON {
		fs.BoolVar(&c.g.json, "json", false, "machine output: one JSON value per result on stdout; errors and logs as JSON lines on stderr")
	}
	fs.StringVar(&c.g.logLevel, "log-level", "warn", "log `level` on stderr: debug, info, warn or error")
	fs.StringVar(&c.g.curveKey, "curve-key", "", "turn CURVE on: the `file` with this node's secret key (mode 0600; see keygen); needed to reach nodes that publish a key")
	fs.StringVar(&c.g.curveAllow, "curve-allow", "", "with --curve-key: the `file` of the public keys allowed to connect to this node's servers, one per line")
	if c.cmd.flags != nil {
		c.cmd.flags(fs, &c.o)
	}
	return fs
}

// check validates the number of positional arguments and the global flags.
func (c *cli) check(pos []string) error {
	switch {
	case len(pos) < c.cmd.minArgs:
		return usagef("missing arguments: want %s", c.cmd.args)
	case c.cmd.maxArgs >= 0 && len(pos) > c.cmd.maxArgs:
		return usagef("too many arguments: want %s", c.cmd.args)
	case c.g.timeout <= 0:
		return usagef("--timeout %v: want more than 0", c.g.timeout)
	}
	return nil
}

// envName is the environment variable of a flag: ZMQMSG_LOG_LEVEL for
// log-level.
func envName(flagName string) string { return envflag.Name("ZMQMSG", flagName) }

var errHelp = flag.ErrHelp

// globalsFirst moves global flags given before the command after it
// ("zmqmsg --json call ..." is "zmqmsg call --json ..."), so that the
// command's flag set parses them. Anything else is left alone.
func globalsFirst(args []string) []string {
	i := 0
	for i < len(args) && strings.HasPrefix(args[i], "-") && args[i] != "-" && args[i] != "--" {
		name, _, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if !globalFlags[name] {
			return args // -h, --help, an unknown flag: left to the caller
		}
		i++
		if name != "json" && !hasValue {
			i++ // its value
		}
	}
	if i == 0 || i >= len(args) {
		return args
	}
	cmd := 1
	if args[i] == "bench" && i+1 < len(args) {
		cmd = 2
	}
	if i+cmd > len(args) {
		return args
	}
	out := append([]string{}, args[i:i+cmd]...)
	out = append(out, args[:i]...)
	return append(out, args[i+cmd:]...)
}

// parseArgs parses args, which may mix flags and positional arguments
// ("--" ends the flags), sets the flags not given from their environment
// variables, and returns the positional arguments.
func parseArgs(fs *flag.FlagSet, args []string, getenv env) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, &usageError{msg: err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if err := envflag.Apply(fs, "ZMQMSG", getenv); err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	return pos, nil
}

// isSet reports whether the flag name was set, on the command line or by
// its environment variable.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

func printOverview(w io.Writer) {
	fmt.Fprint(w, `zmqmsg: the operator CLI of zmqmsg (RPC and notifications over ZeroMQ)

usage: zmqmsg COMMAND [flags] [arguments]

commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `  help          help [COMMAND]: explain a command and its flags

Every flag can also be set by the environment variable ZMQMSG_<FLAG>
(--log-level is ZMQMSG_LOG_LEVEL); the command line beats the environment.
Flags and arguments may be mixed; "--" ends the flags.

global flags (every command):
`)
	c := &cli{cmd: &command{}}
	printFlags(w, c.flagSet(), func(name string) bool { return globalFlags[name] })
	fmt.Fprint(w, exitCodesHelp)
}

// exitCodesHelp is the table of exit codes and JSON error types; README.md
// and the package documentation show the same table (TestExitCodes).
const exitCodesHelp = `
exit codes (with --json, the error's "type" in brackets):
  0  success
  1  any other error, or a bench client run that lost messages or had errors [error]
  2  usage error or bad input: unknown command or flag, invalid JSON, a payload over
     the message size limit, a bad priority, duration or directory URL [usage]
  3  timeout: --timeout passed [timeout]
  4  remote error: the server's handler failed, or the method is unknown [remote]; a
     fanout's method that a server of its topic does not offer (nothing sent)
     [no_such_method]
  5  not delivered: no servers [no_servers], a node that could not be connected to
     (nothing sent) [unavailable], a node lost while its answer was awaited (the
     request may have run) [node_down], a server silent for two --monitor
     intervals [server_lost], a fanout that missed a node or servers that ping,
     info or stats asked and did not answer [unreached], a cast not acknowledged
     [not_acked], a notification a pool did not get [not_delivered] or that no
     pool listens to [unheard], this node's CURVE key refused [unauthorized],
     CURVE on one side only [security_mismatch]
  6  directory unavailable: it could not be reached or read [directory_unavailable]
With --json an error is one JSON line on stderr: {"error": message, "type": type,
"exit": code}, plus "remote_type" and "remote_message" for a remote error,
"unheard": true for an unheard notification, and "method", "lacking" (the servers
that lack it, what they offer) and "lacking_total" for no_such_method.
`

func printCommandHelp(w io.Writer, cmd *command) {
	fmt.Fprintf(w, "usage: zmqmsg %s [flags] %s\n\n%s\n", cmd.name, cmd.args, strings.TrimSpace(cmd.doc))
	c := &cli{cmd: cmd}
	fs := c.flagSet()
	if cmd.flags != nil {
		fmt.Fprint(w, "\nflags:\n")
		printFlags(w, fs, func(name string) bool { return !cmd.isGlobal(name) })
	}
	fmt.Fprint(w, "\nglobal flags:\n")
	printFlags(w, fs, func(name string) bool { return cmd.isGlobal(name) })
	fmt.Fprint(w, exitCodesHelp)
}

// isGlobal reports whether the flag name of cmd is a global flag.
func (cmd *command) isGlobal(name string) bool {
	return globalFlags[name] && !(cmd.ownJSON && name == "json")
}

// printFlags prints the flags of fs that include accepts, each with its
// default and its environment variable.
func printFlags(w io.Writer, fs *flag.FlagSet, include func(name string) bool) {
	fs.VisitAll(func(f *flag.Flag) {
		if !include(f.Name) {
			return
		}
		typ, usage := flag.UnquoteUsage(f)
		if _, ok := f.Value.(*envflag.Duration); ok && typ == "value" {
			typ = "duration"
		} else if typ == "value" {
			typ = "string"
		}
		head := "  --" + f.Name
		if typ != "" {
			head += " " + typ
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			def = fmt.Sprintf(" (default %s)", f.DefValue)
		}
		env := "$" + envName(f.Name)
		if g, ok := f.Value.(flag.Getter); ok && f.Name == "json" {
			if _, ok := g.Get().(string); ok {
				env = "not from the environment" // reply's --json VALUE: see run
			}
		}
		fmt.Fprintf(w, "%s\n        %s%s [%s]\n", head, usage, def, env)
	})
}
