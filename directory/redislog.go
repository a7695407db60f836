package directory

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// SetRedisLogger sends go-redis's own log lines (a failed dial, a pool
// event) to l at Debug level instead of the standard logger, where go-redis
// writes them by default: one line per failed dial, many per second during
// an outage. go-redis keeps this logger process-wide, so this is a call for
// a program's main (zmqmsg-proxy and zmqmsg make it), not for a library.
// The Redis directory's own logs (an outage starting and ending) go to
// RedisOptions.Logger. A nil l discards go-redis's lines.
func SetRedisLogger(l *slog.Logger) {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	redis.SetLogger(redisLogger{l})
}

type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if r.l.Enabled(ctx, slog.LevelDebug) {
		r.l.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
	}
}
