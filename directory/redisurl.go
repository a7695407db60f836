package directory

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ErrBadURL is wrapped by the errors of ParseURL and Open for a directory
// URL they cannot use. The errors are of type *URLError.
var ErrBadURL = errors.New("directory: bad directory URL")

// URLError says why a directory URL was rejected. URL has its passwords
// replaced by "xxxxx". Its Unwrap returns ErrBadURL.
type URLError struct {
	URL    string // the URL without passwords
	Reason string // what is wrong, e.g. "port 0 not in 1..65535"
}

// Error returns "directory: bad directory URL "<URL>": <Reason>".
func (e *URLError) Error() string {
	return ErrBadURL.Error() + " " + strconv.Quote(e.URL) + ": " + e.Reason
}

// Unwrap returns ErrBadURL.
func (e *URLError) Unwrap() error { return ErrBadURL }

// Default ports used when a URL names a host without one.
const (
	defaultRedisPort    = "6379"
	defaultSentinelPort = "26379"
)

// Open returns the directory named by raw:
//
//   - "memory:", "memory://", "mem:" or "mem://": the process-wide [Shared]
//     Memory directory (its Close does nothing);
//   - anything else: a [Redis] directory built by [ParseURL] and [NewRedis]
//     (see ParseURL for the accepted forms), logging to slog.Default().
//
// Open does not contact Redis, so it succeeds while Redis is down; errors
// come from malformed URLs (wrapping ErrBadURL) and options (ErrBadOptions).
// It returns ctx.Err() if ctx is already done. The caller must Close the
// returned directory.
func Open(ctx context.Context, raw string) (Directory, error) {
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	switch strings.TrimSpace(raw) {
	case "memory:", "memory://", "mem:", "mem://":
		return Shared(), nil
	}
	opts, err := ParseURL(raw)
	if err != nil {
		return nil, err
	}
	r, err := NewRedis(opts)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// ParseURL turns a directory URL into RedisOptions. Accepted forms:
//
//	redis://[[user]:password@]host[:port][/db]       standalone server
//	rediss://...                                      the same over TLS
//	redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/mastername[/db]
//	rediss+sentinel://...                             Sentinel, data nodes over TLS
//	redis+cluster://[[user]:password@]host[:port][,host[:port]...]
//	rediss+cluster://...                              Cluster over TLS
//	host:port,host:port[,...]                         Cluster (bare address list)
//	host:port                                         standalone (a bare single address)
//
// The port defaults to 6379 (26379 for sentinels); IPv6 hosts go in
// brackets. The user and password are those of the data nodes; for
// Sentinel they are also used for the sentinels unless the query sets
// sentinel_password. Optional query parameters: prefix (key prefix,
// default "zmqmsg"), op_timeout and poll_interval (Go durations such as
// "500ms"), sentinel_password. An unknown parameter is an error, so typos
// do not pass silently.
//
// Errors are *URLError values wrapping ErrBadURL; they never contain a
// password. ParseURL does not contact Redis.
func ParseURL(raw string) (RedisOptions, error) {
	opts, err := parseURL(strings.TrimSpace(raw))
	if err != nil {
		return RedisOptions{}, &URLError{URL: redactURL(raw), Reason: err.Error()}
	}
	return opts, nil
}

// reason is a plain error carrying the Reason of a URLError.
type reason string

func (r reason) Error() string { return string(r) }

// urlScheme is what a URL's scheme says about the deployment.
type urlScheme struct{ sentinel, cluster, tls bool }

var urlSchemes = map[string]urlScheme{
	"redis":           {},
	"rediss":          {tls: true},
	"redis+sentinel":  {sentinel: true},
	"rediss+sentinel": {sentinel: true, tls: true},
	"redis+cluster":   {cluster: true},
	"rediss+cluster":  {cluster: true, tls: true},
}

// parseURL parses a trimmed directory URL.
func parseURL(raw string) (RedisOptions, error) {
	var opts RedisOptions
	if raw == "" {
		return opts, reason("empty URL")
	}
	name, rest, hasScheme := strings.Cut(raw, "://")
	if !hasScheme {
		return parseBareAddrs(raw)
	}
	scheme, ok := urlSchemes[strings.ToLower(name)]
	if !ok {
		return opts, reason("unknown scheme " + strconv.Quote(name))
	}

	// The userinfo ends at the last '@', so that a password containing
	// '/', '?' or '#' is never taken for a path or query (and never shows
	// up in a Reason); an '@' in a query value must be escaped as %40.
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		if err := parseUserinfo(rest[:i], &opts); err != nil {
			return opts, err
		}
		rest = rest[i+1:]
	}
	rest, query, _ := strings.Cut(rest, "?")
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		return opts, reason("fragments (#) are not allowed")
	}
	hosts, path, _ := strings.Cut(rest, "/")
	addrs, err := parseAddrs(hosts, scheme.defaultPort(), scheme.sentinel || scheme.cluster)
	if err != nil {
		return opts, err
	}
	opts.Addrs = addrs
	if err := scheme.parsePath(path, &opts); err != nil {
		return opts, err
	}
	if err := parseQuery(query, &opts); err != nil {
		return opts, err
	}
	if scheme.sentinel && opts.SentinelPassword == "" {
		opts.SentinelPassword = opts.Password
	}
	if scheme.tls {
		opts.TLS = scheme.tlsConfig(addrs)
	}
	return opts, nil
}

// parseBareAddrs parses a URL without a scheme: host[:port] or a cluster's
// host:port,host:port.
func parseBareAddrs(raw string) (RedisOptions, error) {
	if strings.ContainsAny(raw, "/?@") {
		return RedisOptions{}, reason("no scheme (want redis://, rediss://, redis+sentinel://, redis+cluster:// or host:port,host:port)")
	}
	addrs, err := parseAddrs(raw, defaultRedisPort, true)
	if err != nil {
		return RedisOptions{}, err
	}
	return RedisOptions{Addrs: addrs, Cluster: len(addrs) > 1}, nil
}

// defaultPort is the port of a host given without one.
func (s urlScheme) defaultPort() string {
	if s.sentinel {
		return defaultSentinelPort
	}
	return defaultRedisPort
}

// parsePath reads the URL path: /mastername[/db] for Sentinel, nothing for
// Cluster, [/db] otherwise.
func (s urlScheme) parsePath(path string, opts *RedisOptions) error {
	segs := []string{}
	if path != "" {
		segs = strings.Split(path, "/")
	}
	switch {
	case s.sentinel:
		if len(segs) == 0 || segs[0] == "" {
			return reason("missing master name (redis+sentinel://hosts/mastername[/db])")
		}
		name, err := url.PathUnescape(segs[0])
		if err != nil {
			return reason("bad master name escape")
		}
		opts.MasterName = name
		segs = segs[1:]
	case s.cluster:
		if len(segs) > 1 || len(segs) == 1 && segs[0] != "" {
			return reason("a cluster URL has no path (Cluster has only database 0)")
		}
		opts.Cluster = true
		segs = nil
	}
	switch {
	case len(segs) == 0 || len(segs) == 1 && segs[0] == "":
	case len(segs) == 1:
		db, err := strconv.Atoi(segs[0])
		if err != nil || db < 0 || db > 1<<20 {
			return reason("database " + strconv.Quote(segs[0]) + " is not a number >= 0")
		}
		opts.DB = db
	default:
		return reason("too many path segments")
	}
	return nil
}

// tlsConfig is the TLS configuration for a rediss scheme's addrs.
func (s urlScheme) tlsConfig(addrs []string) *tls.Config {
	host, _, _ := net.SplitHostPort(addrs[0])
	if s.cluster || s.sentinel || len(addrs) > 1 {
		// Several hosts: let the client set ServerName per host.
		host = ""
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
}

// parseUserinfo reads "user:password", ":password" or "user".
func parseUserinfo(ui string, opts *RedisOptions) error {
	user, pass, hasPass := strings.Cut(ui, ":")
	u, err := url.PathUnescape(user)
	if err != nil {
		return reason("bad escape in user name")
	}
	opts.Username = u
	if hasPass {
		pw, err := url.PathUnescape(pass)
		if err != nil {
			return reason("bad escape in password")
		}
		opts.Password = pw
	}
	return nil
}

// parseAddrs splits a comma-separated host[:port] list; several are
// allowed only if many is set.
func parseAddrs(list, defPort string, many bool) ([]string, error) {
	if list == "" {
		return nil, reason("no host")
	}
	parts := strings.Split(list, ",")
	if len(parts) > 1 && !many {
		return nil, reason("several hosts need redis+sentinel:// or redis+cluster://")
	}
	addrs := make([]string, 0, len(parts))
	for _, a := range parts {
		a = strings.TrimSpace(a)
		if a == "" {
			return nil, reason("empty host in list")
		}
		host, port := a, defPort
		if strings.HasPrefix(a, "[") || strings.Count(a, ":") == 1 {
			h, p, err := net.SplitHostPort(a)
			if err != nil {
				// "[::1]" without a port.
				if strings.HasPrefix(a, "[") && strings.HasSuffix(a, "]") {
					h, p, err = a[1:len(a)-1], defPort, nil
				}
				if err != nil {
					return nil, reason("bad address " + strconv.Quote(a))
				}
			}
			host, port = h, p
		} else if strings.Contains(a, ":") {
			return nil, reason("IPv6 address " + strconv.Quote(a) + " must be in brackets")
		}
		if host == "" || strings.ContainsAny(host, " \t@/?#[]") {
			return nil, reason("bad host " + strconv.Quote(host))
		}
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return nil, reason("port " + strconv.Quote(port) + " not in 1..65535")
		}
		addrs = append(addrs, net.JoinHostPort(host, strconv.Itoa(n)))
	}
	return addrs, nil
}

// parseQuery applies the query parameters to opts.
func parseQuery(query string, opts *RedisOptions) error {
	if query == "" {
		return nil
	}
	vals, err := url.ParseQuery(query)
	if err != nil {
		return reason("bad query")
	}
	for name, vs := range vals {
		if len(vs) != 1 {
			return reason("query parameter " + strconv.Quote(name) + " given more than once")
		}
		v := vs[0]
		switch name {
		case "prefix":
			if v == "" {
				return reason("empty prefix")
			}
			opts.Prefix = v
		case "op_timeout", "poll_interval":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return reason(name + " " + strconv.Quote(v) + " is not a positive duration")
			}
			if name == "op_timeout" {
				opts.OpTimeout = d
			} else {
				opts.PollInterval = d
			}
		case "sentinel_password":
			opts.SentinelPassword = v
		default:
			return reason("unknown query parameter " + strconv.Quote(name))
		}
	}
	return nil
}

// redactURL replaces the password in the userinfo and the value of
// sentinel_password in the query with "xxxxx". It works on any string,
// parsable or not, erring on the side of hiding too much.
func redactURL(raw string) string {
	const mask = "xxxxx"
	out := raw
	if scheme, rest, ok := strings.Cut(out, "://"); ok {
		// As in parseURL, the userinfo ends at the last '@'.
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			ui := rest[:at]
			if user, _, hasPass := strings.Cut(ui, ":"); hasPass {
				ui = user + ":" + mask
			}
			rest = ui + rest[at:]
		}
		out = scheme + "://" + rest
	} else if at := strings.LastIndexByte(out, '@'); at >= 0 {
		out = mask + out[at:] // no scheme: hide everything before '@'
	}
	if i := strings.IndexByte(out, '?'); i >= 0 {
		params := strings.Split(out[i+1:], "&")
		for j, kv := range params {
			if k, _, ok := strings.Cut(kv, "="); ok && strings.Contains(strings.ToLower(k), "password") {
				params[j] = k + "=" + mask
			}
		}
		out = out[:i+1] + strings.Join(params, "&")
	}
	return out
}
