package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/zmqmsg/zmqmsg/envelope"
)

// ErrInvalidMetadata: metadata with an empty, reserved or over-long key,
// an over-long value, or more than MaxMetadata entries; nothing was sent.
var ErrInvalidMetadata = errors.New("zmqmsg: invalid metadata")

// MaxMetadata bounds the entries of a message's user metadata.
const MaxMetadata = 64

// ReservedMetaPrefix starts the metadata keys zmqmsg keeps for itself.
const ReservedMetaPrefix = "zmqmsg."

// metaKey is the context key of a message's outgoing metadata.
type metaKey struct{}

// WithMeta returns ctx carrying meta (never modified afterwards) as the
// metadata of the messages sent with it.
func WithMeta(ctx context.Context, meta map[string]string) context.Context {
	return context.WithValue(ctx, metaKey{}, meta)
}

// MetaOf returns the outgoing metadata of ctx, or nil.
func MetaOf(ctx context.Context) map[string]string {
	m, _ := ctx.Value(metaKey{}).(map[string]string)
	return m
}

// ReservedMeta reports whether key belongs to zmqmsg: the notification
// fields (§5.9) and every key starting with ReservedMetaPrefix.
func ReservedMeta(key string) bool {
	switch key {
	case "priority", "event_type", "publisher_id", "timestamp", MetaNotificationID:
		return true
	}
	return strings.HasPrefix(key, ReservedMetaPrefix)
}

// checkMeta validates user metadata before anything is sent.
func checkMeta(meta map[string]string) error {
	if len(meta) > MaxMetadata {
		return fmt.Errorf("%w: %d entries, limit %d", ErrInvalidMetadata, len(meta), MaxMetadata)
	}
	for k, v := range meta {
		switch {
		case k == "":
			return fmt.Errorf("%w: empty key", ErrInvalidMetadata)
		case ReservedMeta(k):
			return fmt.Errorf("%w: key %q is reserved", ErrInvalidMetadata, k)
		case len(k) > envelope.MaxStringLen || len(v) > envelope.MaxStringLen:
			return fmt.Errorf("%w: key %.32q: over %d bytes", ErrInvalidMetadata, k, envelope.MaxStringLen)
		}
	}
	return nil
}
