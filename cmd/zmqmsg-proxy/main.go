// Command zmqmsg-proxy runs a zmqmsg node proxy on its own: the daemon of a
// node (a machine, or one address of it) that hosts several service
// processes.
//
// It binds the node's public ports (call 9501, fanout 9502, notify 9503,
// direct cast 9504 by default) on --host and relays between them and the
// service processes of the node, which join it over IPC sockets in
// --ipc-dir (zmqmsg.Config.ProxyDir) instead of binding ports of their own.
// It registers nothing in the directory: each service process registers
// its servers under the daemon's node. See docs/design.md, "The proxy
// daemon".
//
// Every flag can also be set by an environment variable ZMQMSG_<FLAG>
// (--ipc-dir is ZMQMSG_IPC_DIR); a flag on the command line wins. Run with
// --help for the list; --version prints the module version and VCS commit
// it was built from, and the Go and libzmq versions.
//
// On SIGHUP it reads its --curve-allow file again and allows exactly those
// client keys from then on (connections already made stay).
//
// On SIGTERM or SIGINT it drains (new requests are refused with an error,
// those in flight are answered, bounded by --drain-timeout) and exits 0. It
// exits 1 when it cannot start (a taken port, an unusable directory,
// another daemon on the same directory) and 2 on a bad flag, with one clear
// line on stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/zmqmsg/zmqmsg"
	"github.com/zmqmsg/zmqmsg/directory"
	"github.com/zmqmsg/zmqmsg/internal/envflag"
	"github.com/zmqmsg/zmqmsg/internal/opshttp"
	"github.com/zmqmsg/zmqmsg/metrics"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	go func() {
		// After the first signal the default handling returns: a second
		// SIGTERM or SIGINT ends a drain that takes too long.
		<-ctx.Done()
		stop()
	}()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default: // a reload is pending already
			}
		}
	}()
	os.Exit(run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr, nil))
}

// reload asks a running daemon to read its --curve-allow file again
// (SIGHUP in main; tests send on it directly).
var reload = make(chan struct{}, 1)

const usageHeader = `zmqmsg-proxy: the node proxy daemon of zmqmsg.

It owns the node's public ports and relays to the node's service processes,
which join it over IPC (zmqmsg.Config{ProxyDir: <ipc-dir>}).

Usage: zmqmsg-proxy [flags]
       zmqmsg-proxy --version   (module version, commit, Go and libzmq versions)

Flags (each also read from the environment variable shown):
`

// options are the daemon's settings.
type options struct {
	host                         string
	call, fanout, notify, cast   int
	ipcDir, ipcMode              string
	memberTTL, drainTimeout      time.Duration
	keepaliveIdle, keepaliveIntv time.Duration
	keepaliveCount               int
	hbInterval, hbTimeout        time.Duration
	noKeepalive                  bool
	maxMessageSize               int
	logLevel, logFormat          string
	statsEvery                   time.Duration
	curveKey, curveAllow         string
	metricsAddr, pprofAddr       string
}

// run is the whole command; ready, if not nil, receives the daemon's node
// once it serves (for tests).
func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer, ready chan<- directory.Node) int {
	var o options
	fs := o.flags(stderr)
	if code, done := parseArgs(fs, args, lookup, stdout, stderr); done {
		return code
	}
	cfg, log, err := o.config(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "zmqmsg-proxy: %v\n", err)
		return 2
	}
	ops, err := opshttp.Bind(o.metricsAddr, o.pprofAddr) // a taken address stops it before anything starts
	if err != nil {
		fmt.Fprintf(stderr, "zmqmsg-proxy: cannot start: %v\n", err)
		return 1
	}
	defer ops.Close()
	p, err := zmqmsg.StartProxy(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "zmqmsg-proxy: cannot start: %s%v\n", o.portFlag(err), err)
		return 1
	}
	n := p.Node()
	log.Info("node proxy serving", "host", n.Host, "call", n.CallPort, "fanout", n.FanoutPort, "notify", n.NotifyPort, "cast", n.CastPort, "ipc_dir", cfg.Dir, "curve_key", n.CurveKey)
	ops.Serve(func() []metrics.Family { return metrics.OfProxy(p.Stats()) })
	if ops.Metrics != nil {
		log.Info("metrics serving", "addr", ops.Metrics.Addr().String(), "path", "/metrics")
	}
	if ops.Pprof != nil {
		log.Info("pprof serving", "addr", ops.Pprof.Addr().String(), "path", "/debug/pprof/")
	}
	if ready != nil {
		ready <- n
	}
	o.serve(ctx, log, p)
	return o.stop(log, p)
}

// flags declares the command's flags into o.
func (o *options) flags(stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("zmqmsg-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.host, "host", "127.0.0.1", "`address` other nodes reach this node at; the ports bind to it")
	fs.IntVar(&o.call, "call-port", zmqmsg.DefaultCallPort, "CALL and CAST `port` (0: a free port)")
	fs.IntVar(&o.fanout, "fanout-port", zmqmsg.DefaultFanoutPort, "FANOUT `port` (0: a free port)")
	fs.IntVar(&o.notify, "notify-port", zmqmsg.DefaultNotifyPort, "NOTIFY `port` (0: a free port)")
	fs.IntVar(&o.cast, "cast-port", zmqmsg.DefaultCastPort, "direct CAST `port` (0: a free port)")
	fs.StringVar(&o.ipcDir, "ipc-dir", "/run/zmqmsg", "`directory` of the IPC sockets service processes join (Config.ProxyDir)")
	fs.StringVar(&o.ipcMode, "ipc-mode", "0700", "octal `mode` of the IPC directory and sockets: who may serve on this node")
	envflag.DurationVar(fs, &o.memberTTL, "member-ttl", 3*time.Second, "how long a silent service process keeps its servers routed (it repeats its ATTACHes every second)")
	envflag.DurationVar(fs, &o.drainTimeout, "drain-timeout", 10*time.Second, "on SIGTERM/SIGINT, how long to wait for the requests in flight")
	envflag.DurationVar(fs, &o.keepaliveIdle, "keepalive-idle", 30*time.Second, "TCP keepalive: first probe after this long without traffic")
	envflag.DurationVar(fs, &o.keepaliveIntv, "keepalive-interval", 5*time.Second, "TCP keepalive: interval between probes")
	fs.IntVar(&o.keepaliveCount, "keepalive-count", 3, "TCP keepalive: probes before the peer is declared dead")
	envflag.DurationVar(fs, &o.hbInterval, "heartbeat-interval", 2*time.Second, "ZMTP heartbeat: a PING this often")
	envflag.DurationVar(fs, &o.hbTimeout, "heartbeat-timeout", 6*time.Second, "ZMTP heartbeat: a peer silent this long is disconnected")
	fs.BoolVar(&o.noKeepalive, "no-keepalive", false, "turn TCP keepalive and ZMTP heartbeats off")
	fs.IntVar(&o.maxMessageSize, "max-message-size", 16<<20, "largest payload in `bytes`; a peer sending more is disconnected")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
	envflag.DurationVar(fs, &o.statsEvery, "stats-interval", time.Minute, "log the counters this often (0: never)")
	fs.StringVar(&o.curveKey, "curve-key", "", "turn CURVE on: the `file` with the node's secret key (mode 0600; make one with 'zmqmsg keygen FILE'); the public key is published to clients through the service processes")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://`ADDR`/metrics (host:port; off when empty)")
	fs.StringVar(&o.pprofAddr, "pprof-addr", "", "serve Go profiles at http://`ADDR`/debug/pprof/ (host:port; off when empty; keep it private)")
	fs.StringVar(&o.curveAllow, "curve-allow", "", "with --curve-key: the `file` of allowed client public keys, one per line (# comments)")
	fs.Usage = usage(fs)
	return fs
}

// parseArgs parses the arguments and the ZMQMSG_* environment; done means
// the command ends now with code (--version, --help, a usage error).
func parseArgs(fs *flag.FlagSet, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) (code int, done bool) {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "--version" || a == "-version" {
			printVersion(stdout)
			return 0, true
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, true
		}
		return 2, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "zmqmsg-proxy: unexpected argument %q (see --help)\n", fs.Arg(0))
		return 2, true
	}
	if err := envflag.Apply(fs, "ZMQMSG", lookup); err != nil {
		fmt.Fprintf(stderr, "zmqmsg-proxy: %v\n", err)
		return 2, true
	}
	return 0, false
}

// serve logs the counters every --stats-interval and reloads the allow
// file on SIGHUP, until ctx ends (SIGTERM, SIGINT).
func (o options) serve(ctx context.Context, log *slog.Logger, p *zmqmsg.Proxy) {
	var tick <-chan time.Time
	if o.statsEvery > 0 {
		t := time.NewTicker(o.statsEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-tick:
			logStats(log, "counters", p.Stats())
		case <-reload:
			reloadAllowed(log, p, o.curveAllow)
		case <-ctx.Done():
			return
		}
	}
}

// stop drains the daemon for at most --drain-timeout and closes it.
func (o options) stop(log *slog.Logger, p *zmqmsg.Proxy) int {
	log.Info("draining", "timeout", o.drainTimeout)
	dctx, cancel := context.WithTimeout(context.Background(), o.drainTimeout)
	derr := p.Drain(dctx)
	cancel()
	if derr != nil {
		log.Warn("drain incomplete", "err", derr)
	}
	st := p.Stats()
	if err := p.Close(); err != nil {
		log.Error("close", "err", err)
		return 1
	}
	logStats(log, "stopped", st)
	return 0
}

// portFlag returns "--cast-port 9504: " when err is the failed bind of the
// port that flag set, to name it first; "" otherwise.
func (o options) portFlag(err error) string {
	for _, p := range []struct {
		name string
		port int
	}{{"call-port", o.call}, {"fanout-port", o.fanout}, {"notify-port", o.notify}, {"cast-port", o.cast}} {
		if p.port != 0 && strings.Contains(err.Error(), "bind tcp://"+net.JoinHostPort(o.host, strconv.Itoa(p.port))+": ") {
			return fmt.Sprintf("--%s %d: ", p.name, p.port)
		}
	}
	return ""
}

// reloadAllowed reads the allow file again and hands its keys to the
// daemon; a bad file changes nothing.
func reloadAllowed(log *slog.Logger, p *zmqmsg.Proxy, file string) {
	if file == "" {
		log.Warn("reload: no --curve-allow file to read")
		return
	}
	keys, err := zmqmsg.ReadAllowedClients(file)
	if err == nil {
		err = p.SetAllowedClients(keys)
	}
	if err != nil {
		log.Error("reload of the allowed client keys failed; the previous ones stay", "file", file, "err", err)
		return
	}
	log.Info("allowed client keys reloaded", "file", file, "keys", len(keys))
}

func logStats(log *slog.Logger, msg string, st zmqmsg.ProxyStats) {
	log.Info(msg, "members", st.Members, "listeners", st.Listeners, "relayed", st.Relayed, "replies", st.Replies,
		"no_servers", st.NoServers, "overloaded", st.Overloaded, "malformed", st.Malformed, "wrong_kind", st.WrongKind,
		"direct", st.DirectCasts, "direct_dropped", st.DirectDropped, "fanouts", st.Fanouts, "fanout_dropped", st.FanoutDropped, "held", st.PushedBack,
		"send_failed", st.SendFailed, "members_lost", st.MembersLost, "conflicts", st.Conflicts, "refused_draining", st.Refused,
		"handshake_failures", st.HandshakeFailures, "auth_allowed", st.AuthAllowed, "auth_denied", st.AuthDenied)
}

// config checks the options and turns them into a ProxyConfig and a logger.
func (o options) config(stderr io.Writer) (zmqmsg.ProxyConfig, *slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return zmqmsg.ProxyConfig{}, nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", o.logLevel)
	}
	hopts := &slog.HandlerOptions{Level: level}
	var log *slog.Logger
	switch o.logFormat {
	case "text":
		log = slog.New(slog.NewTextHandler(stderr, hopts))
	case "json":
		log = slog.New(slog.NewJSONHandler(stderr, hopts))
	default:
		return zmqmsg.ProxyConfig{}, nil, fmt.Errorf("--log-format %q: want text or json", o.logFormat)
	}
	mode, err := strconv.ParseUint(o.ipcMode, 8, 32)
	if err != nil || mode > 0o777 || mode&0o700 != 0o700 {
		return zmqmsg.ProxyConfig{}, nil, fmt.Errorf("--ipc-mode %q: want an octal mode that gives the owner rwx, e.g. 0700 or 0770", o.ipcMode)
	}
	port := func(name string, p int) (int, error) {
		switch {
		case p == 0:
			return zmqmsg.AnyPort, nil
		case p < 0 || p > 65535:
			return 0, fmt.Errorf("--%s %d: want 1..65535, or 0 for a free port", name, p)
		}
		return p, nil
	}
	cfg := zmqmsg.ProxyConfig{Host: o.host, Dir: o.ipcDir, DirMode: os.FileMode(mode), MemberTTL: o.memberTTL, MaxMessageSize: o.maxMessageSize, Logger: log}
	for _, p := range []struct {
		name string
		v    int
		dst  *int
	}{{"call-port", o.call, &cfg.Ports.Call}, {"fanout-port", o.fanout, &cfg.Ports.Fanout}, {"notify-port", o.notify, &cfg.Ports.Notify}, {"cast-port", o.cast, &cfg.Ports.Cast}} {
		if *p.dst, err = port(p.name, p.v); err != nil {
			return cfg, nil, err
		}
	}
	switch {
	case o.host == "":
		return cfg, nil, errors.New("--host is empty")
	case o.ipcDir == "":
		return cfg, nil, errors.New("--ipc-dir is empty")
	case o.memberTTL < 2*time.Second || o.drainTimeout < 0:
		return cfg, nil, errors.New("--member-ttl must be at least 2s (members repeat their ATTACHes every second) and --drain-timeout ≥ 0")
	case net.ParseIP(o.host) != nil && net.ParseIP(o.host).IsUnspecified():
		return cfg, nil, fmt.Errorf("--host %s: the address other nodes reach this node at, not a wildcard", o.host)
	case o.maxMessageSize <= 0:
		return cfg, nil, errors.New("--max-message-size must be > 0")
	}
	if o.noKeepalive {
		cfg.Keepalive.Disabled = true
	} else {
		if o.keepaliveIdle <= 0 || o.keepaliveIntv <= 0 || o.keepaliveCount <= 0 || o.hbInterval <= 0 || o.hbTimeout <= 0 {
			return cfg, nil, errors.New("keepalive and heartbeat settings must be > 0 (or use --no-keepalive)")
		}
		cfg.Keepalive = zmqmsg.Keepalive{Idle: o.keepaliveIdle, Interval: o.keepaliveIntv, Count: o.keepaliveCount,
			HeartbeatInterval: o.hbInterval, HeartbeatTimeout: o.hbTimeout}
	}
	switch {
	case o.curveKey != "":
		sec, err := zmqmsg.LoadSecurity(o.curveKey, "")
		if err != nil {
			return cfg, nil, fmt.Errorf("--curve-key %s: %w", o.curveKey, err)
		}
		if o.curveAllow != "" {
			if sec.AllowedClients, err = zmqmsg.ReadAllowedClients(o.curveAllow); err != nil {
				return cfg, nil, fmt.Errorf("--curve-allow %s: %w", o.curveAllow, err)
			}
		}
		cfg.Security = sec
	case o.curveAllow != "":
		return cfg, nil, errors.New("--curve-allow needs --curve-key")
	}
	return cfg, log, nil
}
