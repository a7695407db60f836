package directory

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Redis data model; see the package documentation ("Redis data model")
// for the overview.
//
// A target is one Key. Its id is escape(Exchange) + "/" + escape(Topic);
// the id is the Cluster hash tag of the target's three keys, the member of
// the index set and the payload of change notifications.

// keyGrace is how long a target's keys outlive its last entry, so that a
// reader still sees the version counter shortly after the last expiry.
const keyGrace = time.Minute

// escapeID percent-encodes '%', '{', '}', '/' and control bytes, so that an
// id has no braces (the hash tag stays intact) and exactly one '/'.
func escapeID(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%' || c == '{' || c == '}' || c == '/' || c < 0x20 || c == 0x7f:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unescapeID reverses escapeID; ok is false for malformed input.
func unescapeID(s string) (string, bool) {
	if !strings.Contains(s, "%") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(n))
		i += 2
	}
	return b.String(), true
}

// targetID returns the id of k.
func targetID(k Key) string { return escapeID(k.Exchange) + "/" + escapeID(k.Topic) }

// parseTargetID reverses targetID.
func parseTargetID(id string) (Key, bool) {
	ex, topic, ok := strings.Cut(id, "/")
	if !ok {
		return Key{}, false
	}
	ex, ok1 := unescapeID(ex)
	topic, ok2 := unescapeID(topic)
	if !ok1 || !ok2 {
		return Key{}, false
	}
	return Key{Exchange: ex, Topic: topic}, true
}

// targetKeys returns the sorted set, hash and version keys of the target
// id: "<prefix>:{<id>}:servers", ":regs" and ":ver", in that order (the
// scripts' KEYS[1..3]).
func targetKeys(prefix, id string) []string {
	base := prefix + ":{" + id + "}:"
	return []string{base + "servers", base + "regs", base + "ver"}
}

// regJSON is how a server's Node and Methods are stored in the regs hash.
// The encoding is canonical (encoding/json writes struct fields in order),
// because the scripts compare stored and new values as strings to detect a
// changed server; "methods" comes last, so that the Node's own encoding
// (encodeNode: the same without methods) is a prefix that a Deregister's
// check compares. Older readers ignore "methods".
type regJSON struct {
	Host    string   `json:"host"`
	Call    int      `json:"call"`
	Fanout  int      `json:"fanout,omitempty"`
	Notify  int      `json:"notify,omitempty"`
	Cast    int      `json:"cast,omitempty"`
	Curve   string   `json:"curve,omitempty"`
	Methods []string `json:"methods,omitempty"`
}

// encodeReg encodes n and methods for the regs hash.
func encodeReg(n Node, methods []string) string {
	b, err := json.Marshal(regJSON{n.Host, n.CallPort, n.FanoutPort, n.NotifyPort, n.CastPort, n.CurveKey, methods})
	if err != nil { // cannot happen: strings and ints only
		panic(err)
	}
	return string(b)
}

// encodeNode encodes n alone: what a Deregister names.
func encodeNode(n Node) string { return encodeReg(n, nil) }

func decodeReg(s string) (Node, []string, error) {
	var j regJSON
	if err := json.Unmarshal([]byte(s), &j); err != nil {
		return Node{}, nil, err
	}
	return Node{Host: j.Host, CallPort: j.Call, FanoutPort: j.Fanout, NotifyPort: j.Notify, CastPort: j.Cast, CurveKey: j.Curve}, j.Methods, nil
}

// luaPrelude is shared by the scripts. KEYS are targetKeys; ARGV[1] is the
// changes channel, ARGV[2] the target id, ARGV[3] the key grace in ms.
const luaPrelude = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- bump raises the version to max(old + 1, now), so that it also grows
-- across a loss of data, and announces the change.
local function bump(now)
  local v = redis.call('INCR', KEYS[3])
  if v < now then
    v = now
    redis.call('SET', KEYS[3], string.format('%d', v), 'KEEPTTL')
  end
  redis.call('PUBLISH', ARGV[1], ARGV[2])
  return v
end
-- prune removes the entries whose expiry is at or before now.
local function prune(now)
  local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
  for i = 1, #dead do
    redis.call('HDEL', KEYS[2], dead[i])
  end
  if #dead > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  end
  return #dead
end
-- keep lets the three keys live until the grace after the last expiry.
local function keep(now)
  local ms = tonumber(ARGV[3])
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if #last == 2 then
    ms = ms + math.max(0, tonumber(last[2]) - now)
  end
  for i = 1, 3 do
    redis.call('PEXPIRE', KEYS[i], string.format('%d', ms))
  end
end
local function version()
  return tonumber(redis.call('GET', KEYS[3]) or '0')
end
`

// registerScript: ARGV[4] server, ARGV[5] node JSON, ARGV[6] ttl in ms.
// Returns {version, server now in ms, 1 if changed else 0}.
var registerScript = redis.NewScript(luaPrelude + `
local now = now_ms()
local changed = prune(now) > 0
if redis.call('HGET', KEYS[2], ARGV[4]) ~= ARGV[5] then
  changed = true
end
redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[6])), ARGV[4])
redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
local v
if changed then v = bump(now) else v = version() end
keep(now)
if changed then return {v, now, 1} end
return {v, now, 0}
`)

// lookupScript returns {version, server now in ms, server, expiry in ms,
// node JSON, server, expiry, JSON, ...}, pruning expired entries first.
var lookupScript = redis.NewScript(luaPrelude + `
local now = now_ms()
local v
if prune(now) > 0 then
  v = bump(now)
  keep(now)
else
  v = version()
end
local m = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local out = {v, now}
for i = 1, #m, 2 do
  out[#out + 1] = m[i]
  out[#out + 1] = m[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], m[i]) or ''
end
return out
`)

// deregisterScript: ARGV[4] server, ARGV[5] node JSON (encodeNode). Removes
// the entry only if its stored node is ARGV[5]: the stored value is ARGV[5],
// or ARGV[5] without its closing brace followed by ,"methods":.
// Returns {1 if removed else 0, version}.
var deregisterScript = redis.NewScript(luaPrelude + `
local stored = redis.call('HGET', KEYS[2], ARGV[4])
local node = ARGV[5]
local head = string.sub(node, 1, #node - 1)
if stored ~= node and (not stored or string.sub(stored, 1, #head + 11) ~= head .. ',"methods":') then
  return {0, version()}
end
local now = now_ms()
redis.call('HDEL', KEYS[2], ARGV[4])
redis.call('ZREM', KEYS[1], ARGV[4])
local v = bump(now)
keep(now)
return {1, v}
`)

// lookupResult is a parsed lookupScript reply.
type lookupResult struct {
	version int64
	entries []Entry // sorted by (Node.ID(), Server); never nil
}

// parseLookup converts a lookupScript reply; received is the local time
// at which it arrived, used to turn server-clock expiries into local ones.
func parseLookup(k Key, reply []any, received time.Time) (lookupResult, error) {
	res := lookupResult{entries: []Entry{}}
	if len(reply) < 2 || (len(reply)-2)%3 != 0 {
		return res, fmt.Errorf("directory: malformed lookup reply of %d elements", len(reply))
	}
	ver, ok1 := reply[0].(int64)
	now, ok2 := reply[1].(int64)
	if !ok1 || !ok2 {
		return res, fmt.Errorf("directory: malformed lookup reply header %T %T", reply[0], reply[1])
	}
	res.version = ver
	for i := 2; i < len(reply); i += 3 {
		server, _ := reply[i].(string)
		score, _ := reply[i+1].(string)
		js, _ := reply[i+2].(string)
		if js == "" { // a member without registration: skip it
			continue
		}
		exp, err := strconv.ParseFloat(score, 64)
		if err != nil {
			return res, fmt.Errorf("directory: malformed expiry %q of %s: %w", score, server, err)
		}
		node, methods, err := decodeReg(js)
		if err != nil {
			return res, fmt.Errorf("directory: malformed registration of %s: %w", server, err)
		}
		res.entries = append(res.entries, Entry{
			Registration: Registration{Key: k, Server: server, Node: node, Methods: methods},
			Expires:      received.Add(time.Duration(int64(exp)-now) * time.Millisecond),
		})
	}
	sortEntries(res.entries) // one Key: (Node.ID(), Server) order
	return res, nil
}
