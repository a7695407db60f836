// Command zmqmsg is the operator CLI of zmqmsg: it calls, casts, fans out
// and publishes notifications to the servers registered in a directory,
// listens to notifications, lists what the directory knows, asks servers
// who they are, what they offer and how they fare (ping, info, stats), and
// benchmarks every pattern. Arguments go in as JSON, replies come out as
// JSON.
//
//	zmqmsg call     [flags] TOPIC METHOD [JSON|-]
//	zmqmsg cast     [flags] TOPIC METHOD [JSON|-]
//	zmqmsg fanout   [flags] TOPIC METHOD [JSON|-]
//	zmqmsg notify   [flags] TOPIC EVENT_TYPE [JSON|-]
//	zmqmsg listen   [flags] TOPIC...
//	zmqmsg reply    [flags] TOPIC METHOD --echo | --json VALUE | --command CMD
//	zmqmsg servers  [flags] [TOPIC]
//	zmqmsg ping     [flags] [TOPIC]
//	zmqmsg info     [flags] [TOPIC]
//	zmqmsg stats    [flags] [TOPIC]
//	zmqmsg keygen   [flags] FILE
//	zmqmsg bench server [flags]
//	zmqmsg bench client [flags]
//	zmqmsg version      (or zmqmsg --version)
//	zmqmsg help [COMMAND]
//
// # Flags and environment
//
// Every flag can also be set by an environment variable ZMQMSG_<FLAG>, in
// upper case with dashes as underscores (--log-level is ZMQMSG_LOG_LEVEL);
// a flag on the command line beats the environment. Flags and positional
// arguments may be mixed; "--" ends the flags (needed before a JSON argument
// that starts with a dash, such as -1). The global flags, accepted by every
// command, are --directory (default redis://127.0.0.1:6379; "memory:" is
// the in-process directory, useful only in tests), --host (the address of
// the CLI's own node, which binds free ports), --timeout (default 10s),
// --exchange, --json (machine output; logs and errors on stderr become JSON
// lines too) and --log-level (logs go to stderr, data to stdout). listen
// and bench server also take --proxy-dir DIR: the node then joins a running
// node proxy daemon (zmqmsg-proxy) over its IPC sockets in DIR instead of
// binding ports. "zmqmsg help COMMAND" or
// "zmqmsg COMMAND --help" explains each flag.
//
// # Exit codes
//
//	exit codes (with --json, the error's "type" in brackets):
//	  0  success
//	  1  any other error, or a bench client run that lost messages or had errors [error]
//	  2  usage error or bad input: unknown command or flag, invalid JSON, a payload over
//	     the message size limit, a bad priority, duration or directory URL [usage]
//	  3  timeout: --timeout passed [timeout]
//	  4  remote error: the server's handler failed, or the method is unknown [remote]; a
//	     fanout's method that a server of its topic does not offer (nothing sent)
//	     [no_such_method]
//	  5  not delivered: no servers [no_servers], a node that could not be connected to
//	     (nothing sent) [unavailable], a node lost while its answer was awaited (the
//	     request may have run) [node_down], a server silent for two --monitor
//	     intervals [server_lost], a fanout that missed a node or servers that ping,
//	     info or stats asked and did not answer [unreached], a cast not acknowledged
//	     [not_acked], a notification a pool did not get [not_delivered] or that no
//	     pool listens to [unheard], this node's CURVE key refused [unauthorized],
//	     CURVE on one side only [security_mismatch]
//	  6  directory unavailable: it could not be reached or read [directory_unavailable]
//	With --json an error is one JSON line on stderr: {"error": message, "type": type,
//	"exit": code}, plus "remote_type" and "remote_message" for a remote error,
//	"unheard": true for an unheard notification, and "method", "lacking" (the servers
//	that lack it, what they offer) and "lacking_total" for no_such_method.
//
// Without --json, an error is one line on stderr.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
)

func main() {
	// go-redis would print a line per failed dial on stderr during a Redis
	// outage; the directory logs the outage's start and end instead.
	directory.SetRedisLogger(nil)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}

// Exit codes; see the package documentation.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitTimeout     = 3
	exitRemote      = 4
	exitUndelivered = 5
	exitDirectory   = 6
)

// usageError is bad input from the operator: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// lostError: a bench run lost messages or had errors (exit 1).
type lostError struct{ lost, errors int64 }

func (e *lostError) Error() string {
	return fmt.Sprintf("bench: %d messages lost, %d errors", e.lost, e.errors)
}

// unheardError: a notification sent to a topic no listener pool listens
// to (exit 5).
type unheardError struct{ topic string }

func (e *unheardError) Error() string {
	return fmt.Sprintf("nobody listens to %s: no listener pool got the notification", e.topic)
}

// remoteDeadlineType is RemoteError.Type of a handler that returned its
// ctx.Err() at the caller's deadline (the Go type of
// context.DeadlineExceeded).
const remoteDeadlineType = "context.deadlineExceededError"

// classify maps err to its exit code and a short kind for JSON errors.
func classify(err error) (int, string) {
	var ue *usageError
	var re *zmqmsg.RemoteError
	switch {
	case err == nil:
		return exitOK, ""
	case errors.As(err, &ue), errors.Is(err, directory.ErrBadURL):
		return exitUsage, "usage"
	case errors.As(err, new(*silentError)):
		// Servers that ping, info or stats asked did not answer, whatever
		// the first one's error (it may be a timeout): before the cases
		// that it would match.
		return exitUndelivered, "unreached"
	case errors.Is(err, zmqmsg.ErrTooLarge):
		// The CLI sends only what the operator gave it: bad input.
		return exitUsage, "usage"
	case errors.Is(err, zmqmsg.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return exitTimeout, "timeout"
	case errors.As(err, &re) && re.Type == remoteDeadlineType:
		// The handler's ctx ends at the caller's deadline; its error
		// reply can beat the caller's own timer. It is a timeout all
		// the same.
		return exitTimeout, "timeout"
	case errors.As(err, &re):
		return exitRemote, "remote"
	case errors.As(err, new(*noSuchMethodError)):
		return exitRemote, "no_such_method"
	case errors.Is(err, zmqmsg.ErrDirectoryUnavailable), errors.Is(err, directory.ErrUnavailable):
		return exitDirectory, "directory_unavailable"
	case errors.Is(err, zmqmsg.ErrNoServers):
		return exitUndelivered, "no_servers"
	case errors.Is(err, zmqmsg.ErrUnreached):
		return exitUndelivered, "unreached"
	case errors.Is(err, zmqmsg.ErrNotAcked):
		return exitUndelivered, "not_acked"
	case errors.As(err, new(*unheardError)):
		return exitUndelivered, "unheard"
	case errors.Is(err, zmqmsg.ErrNotDelivered):
		return exitUndelivered, "not_delivered"
	case errors.Is(err, zmqmsg.ErrUnavailable):
		// The node could not be connected to: never sent.
		return exitUndelivered, "unavailable"
	case errors.Is(err, zmqmsg.ErrNodeDown):
		// Lost with its node's connection: it may have run.
		return exitUndelivered, "node_down"
	case errors.Is(err, zmqmsg.ErrServerLost):
		// Its server went silent (--monitor): it may have run.
		return exitUndelivered, "server_lost"
	case errors.Is(err, zmqmsg.ErrUnauthorized):
		return exitUndelivered, "unauthorized"
	case errors.Is(err, zmqmsg.ErrSecurityRequired), errors.Is(err, zmqmsg.ErrInsecureNode):
		return exitUndelivered, "security_mismatch"
	}
	return exitError, "error"
}

// env looks an environment variable up, like os.LookupEnv.
type env func(key string) (string, bool)

// run is the whole CLI: it parses args, runs one command and returns the
// exit code. ctx ends the long-running commands (listen, bench server) and
// cancels the others; main cancels it on SIGINT and SIGTERM.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv env) int {
	if getenv == nil {
		getenv = func(string) (string, bool) { return "", false }
	}
	args = globalsFirst(args)
	if len(args) == 0 {
		printOverview(stderr)
		return exitUsage
	}
	switch args[0] {
	case "--version", "-version":
		args = append([]string{"version"}, args[1:]...)
	case "help", "-h", "-help", "--help":
		return help(args[1:], stdout, stderr)
	}
	cmd, rest, code := pickCommand(args, stdout, stderr)
	if cmd == nil {
		return code
	}
	if cmd.ownJSON {
		// ZMQMSG_JSON=true means machine output, not reply's --json VALUE.
		outer := getenv
		getenv = func(k string) (string, bool) {
			if k == envName("json") {
				return "", false
			}
			return outer(k)
		}
	}
	c := &cli{cmd: cmd, stdin: stdin, stdout: stdout, stderr: stderr}
	c.fs = c.flagSet()
	pos, err := parseArgs(c.fs, rest, getenv)
	if errors.Is(err, errHelp) {
		printCommandHelp(stdout, cmd)
		return exitOK
	}
	if err == nil {
		err = c.prepare(pos)
	}
	if err == nil {
		err = cmd.run(ctx, c, pos)
	}
	return c.report(err)
}

// help prints the help of the command args names ("bench server" is two
// words), or the overview without one, and returns the exit code.
func help(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printOverview(stdout)
		return exitOK
	}
	name := args[0]
	if name == "bench" && len(args) > 1 {
		name += " " + args[1]
	}
	cmd := findCommand(name)
	if cmd == nil {
		fmt.Fprintf(stderr, "zmqmsg: unknown command %q (see zmqmsg help)\n", name)
		return exitUsage
	}
	printCommandHelp(stdout, cmd)
	return exitOK
}

// pickCommand returns the command that args start with and the arguments
// after its name. Without one it prints why (or, for bench --help, the
// overview) and returns a nil command and the exit code.
func pickCommand(args []string, stdout, stderr io.Writer) (*command, []string, int) {
	name, rest := args[0], args[1:]
	if name == "bench" {
		switch {
		case len(rest) > 0 && (rest[0] == "server" || rest[0] == "client"):
			name, rest = "bench "+rest[0], rest[1:]
		case len(rest) > 0 && (rest[0] == "-h" || rest[0] == "--help" || rest[0] == "-help"):
			printOverview(stdout)
			return nil, nil, exitOK
		case len(rest) > 0:
			fmt.Fprintf(stderr, "zmqmsg: %q is not a subcommand of bench: want bench server or bench client (see zmqmsg help bench server)\n", rest[0])
			return nil, nil, exitUsage
		default:
			fmt.Fprintln(stderr, "zmqmsg: bench needs a subcommand: bench server | bench client (see zmqmsg help bench server)")
			return nil, nil, exitUsage
		}
	}
	cmd := findCommand(name)
	if cmd == nil {
		fmt.Fprintf(stderr, "zmqmsg: unknown command %q (see zmqmsg help)\n", name)
		return nil, nil, exitUsage
	}
	return cmd, rest, exitOK
}

// prepare checks the positional arguments and the global flags, and sets
// up the logger.
func (c *cli) prepare(pos []string) error {
	if err := c.check(pos); err != nil {
		return err
	}
	var level slog.Level
	var err error
	if lerr := level.UnmarshalText([]byte(c.g.logLevel)); lerr != nil {
		err = usagef("--log-level %q: want debug, info, warn or error", c.g.logLevel)
	}
	c.log = newLogger(c.stderr, level, c.g.json)
	return err
}

// newLogger returns the CLI's logger on stderr: JSON lines with --json
// (asJSON), text otherwise.
func newLogger(stderr io.Writer, level slog.Level, asJSON bool) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if asJSON {
		return slog.New(slog.NewJSONHandler(stderr, opts))
	}
	return slog.New(slog.NewTextHandler(stderr, opts))
}

// notice prints a status line on stderr whatever --log-level says ("zmqmsg
// listen: listening ..."): a JSON log line at level INFO with --json, plain
// text otherwise.
func (c *cli) notice(msg string, attrs ...slog.Attr) {
	if c.g.json {
		newLogger(c.stderr, slog.LevelInfo, true).LogAttrs(context.Background(), slog.LevelInfo, msg, attrs...)
		return
	}
	fmt.Fprintf(c.stderr, "zmqmsg %s: %s\n", c.cmd.name, msg)
}

// report prints err (if any) on stderr and returns the exit code.
func (c *cli) report(err error) int {
	code, kind := classify(err)
	if err == nil {
		return code
	}
	if c.g.json {
		out := map[string]any{"error": err.Error(), "type": kind, "exit": code}
		var re *zmqmsg.RemoteError
		if errors.As(err, &re) {
			out["remote_type"], out["remote_message"] = re.Type, re.Message
		}
		if kind == "unheard" {
			out["unheard"] = true
		}
		var nm *noSuchMethodError
		if errors.As(err, &nm) {
			out["method"], out["lacking"], out["lacking_total"] = nm.method, nm.named(), len(nm.lacking)
		}
		b, _ := json.Marshal(out) // strings, ints and lackingServers always encode
		fmt.Fprintf(c.stderr, "%s\n", b)
		return code
	}
	if code == exitUsage {
		fmt.Fprintf(c.stderr, "zmqmsg %s: %v (see zmqmsg %s --help)\n", c.cmd.name, err, c.cmd.name)
		return code
	}
	fmt.Fprintf(c.stderr, "zmqmsg %s: %v\n", c.cmd.name, err)
	return code
}
