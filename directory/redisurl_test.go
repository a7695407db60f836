package directory

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zmqmsg/zmqmsg/internal/redistest"
)

func TestParseURL(t *testing.T) {
	for _, tt := range []struct {
		raw  string
		want string // fmt of the interesting fields
	}{
		{"redis://127.0.0.1:6379", "addrs=[127.0.0.1:6379] master= cluster=false user= pass= spass= db=0 tls=false prefix= op=0s poll=0s"},
		{"redis://localhost", "addrs=[localhost:6379] master= cluster=false user= pass= spass= db=0 tls=false prefix= op=0s poll=0s"},
		{"redis://u:p%40ss@h:1/3", "addrs=[h:1] master= cluster=false user=u pass=p@ss spass= db=3 tls=false prefix= op=0s poll=0s"},
		{"redis://:pw@h:1/", "addrs=[h:1] master= cluster=false user= pass=pw spass= db=0 tls=false prefix= op=0s poll=0s"},
		{"redis://:p/w?x@h:1", "addrs=[h:1] master= cluster=false user= pass=p/w?x spass= db=0 tls=false prefix= op=0s poll=0s"},
		{"rediss://h:6380", "addrs=[h:6380] master= cluster=false user= pass= spass= db=0 tls=true prefix= op=0s poll=0s"},
		{"redis://[::1]:7000", "addrs=[[::1]:7000] master= cluster=false user= pass= spass= db=0 tls=false prefix= op=0s poll=0s"},
		{"redis://[::1]", "addrs=[[::1]:6379] master= cluster=false user= pass= spass= db=0 tls=false prefix= op=0s poll=0s"},
		{"redis+sentinel://:pw@s1:26379,s2/mymaster/2", "addrs=[s1:26379 s2:26379] master=mymaster cluster=false user= pass=pw spass=pw db=2 tls=false prefix= op=0s poll=0s"},
		{"redis+sentinel://s1/m?sentinel_password=sp", "addrs=[s1:26379] master=m cluster=false user= pass= spass=sp db=0 tls=false prefix= op=0s poll=0s"},
		{"redis+cluster://a:1,b:2", "addrs=[a:1 b:2] master= cluster=true user= pass= spass= db=0 tls=false prefix= op=0s poll=0s"},
		{"redis+cluster://a:1", "addrs=[a:1] master= cluster=true user= pass= spass= db=0 tls=false prefix= op=0s poll=0s"},
		{"rediss+cluster://a:1,b:2/", "addrs=[a:1 b:2] master= cluster=true user= pass= spass= db=0 tls=true prefix= op=0s poll=0s"},
		{"a:1,b:2,c:3", "addrs=[a:1 b:2 c:3] master= cluster=true user= pass= spass= db=0 tls=false prefix= op=0s poll=0s"},
		{"a:1", "addrs=[a:1] master= cluster=false user= pass= spass= db=0 tls=false prefix= op=0s poll=0s"},
		{"redis://h:1?prefix=app1&op_timeout=250ms&poll_interval=2s", "addrs=[h:1] master= cluster=false user= pass= spass= db=0 tls=false prefix=app1 op=250ms poll=2s"},
		{"REDIS://h:1", "addrs=[h:1] master= cluster=false user= pass= spass= db=0 tls=false prefix= op=0s poll=0s"},
	} {
		o, err := ParseURL(tt.raw)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tt.raw, err)
			continue
		}
		got := fmt.Sprintf("addrs=%v master=%s cluster=%v user=%s pass=%s spass=%s db=%d tls=%v prefix=%s op=%v poll=%v",
			o.Addrs, o.MasterName, o.Cluster, o.Username, o.Password, o.SentinelPassword, o.DB, o.TLS != nil, o.Prefix, o.OpTimeout, o.PollInterval)
		if got != tt.want {
			t.Errorf("ParseURL(%q)\n got %s\nwant %s", tt.raw, got, tt.want)
		}
		if _, err := NewRedis(o); err != nil { // also valid options
			t.Errorf("NewRedis(ParseURL(%q)): %v", tt.raw, err)
		}
	}
}

func TestParseURLErrors(t *testing.T) {
	const secret = "s3cr3t"
	for _, raw := range []string{
		"",
		"   ",
		"http://h:1",
		"redis://",
		"redis://h:0",
		"redis://h:65536",
		"redis://h:port",
		"redis://h:1,h:2",
		"redis://h:1/x",
		"redis://h:1/-1",
		"redis://h:1/1/2",
		"redis://h:1#frag",
		"redis://h:1?unknown=1",
		"redis://h:1?op_timeout=soon",
		"redis://h:1?poll_interval=-1s",
		"redis://h:1?prefix=",
		"redis://h:1?prefix=a&prefix=b",
		"redis://h:1?prefix=a{b}",
		"redis://::1:6379",
		"redis://h:1,,h:2",
		"redis+sentinel://s1:1",
		"redis+sentinel://s1:1/",
		"redis+cluster://a:1/0",
		"redis+cluster://a:1,b:2/3",
		"a:1,b:x",
		"a:1/0",
		"user:" + secret + "@h:1",
		"redis://u:" + secret + "@h:0",
		"redis://u:" + secret + "@h:1/notadb",
		"redis://u:" + secret + "/x@h:99999",
		"redis://u:" + secret + "@h:1?sentinel_password=" + secret + "&bogus=1",
		"redis+sentinel://:" + secret + "@s1,s2",
		"redis://u:%zz" + secret + "@h:1",
	} {
		_, err := ParseURL(raw)
		if err == nil {
			if raw == "redis://h:1?prefix=a{b}" {
				continue // ParseURL accepts it; NewRedis rejects it (below)
			}
			t.Errorf("ParseURL(%q) accepted", raw)
			continue
		}
		var ue *URLError
		if !errors.Is(err, ErrBadURL) || !errors.As(err, &ue) {
			t.Errorf("ParseURL(%q) = %v, want a *URLError wrapping ErrBadURL", raw, err)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("ParseURL(%q) error shows the password: %v", raw, err)
		}
		t.Log(err)
	}
	o, err := ParseURL("redis://h:1?prefix=a{b}")
	if err == nil {
		if _, err := NewRedis(o); !errors.Is(err, ErrBadOptions) {
			t.Errorf("prefix with a brace: NewRedis = %v", err)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for raw, want := range map[string]string{
		"redis://u:pw@h:1/0":                    "redis://u:xxxxx@h:1/0",
		"redis://:pw@h:1":                       "redis://:xxxxx@h:1",
		"redis://u@h:1":                         "redis://u@h:1",
		"redis://u:p/w@h:1":                     "redis://u:xxxxx@h:1",
		"redis://h:1?sentinel_password=x&a=b":   "redis://h:1?sentinel_password=xxxxx&a=b",
		"u:pw@h:1":                              "xxxxx@h:1",
		"redis+sentinel://:pw@a,b/m?prefix=p":   "redis+sentinel://:xxxxx@a,b/m?prefix=p",
		"redis+sentinel://a,b/m":                "redis+sentinel://a,b/m",
		"rediss://user:pa:ss@h:1?op_timeout=1s": "rediss://user:xxxxx@h:1?op_timeout=1s",
	} {
		if got := redactURL(raw); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", raw, got, want)
		}
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"redis://u:p@h:1/2?prefix=x", "rediss://h", "redis+sentinel://:p@a:1,b/m/1",
		"redis+cluster://a:1,b:2", "a:1,b:2", "redis://[::1]:1", "redis://%zz@h", "memory:",
		"redis://h:1?op_timeout=1s&poll_interval=2s&sentinel_password=x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		o, err := ParseURL(raw)
		if err != nil {
			if !errors.Is(err, ErrBadURL) {
				t.Fatalf("error %v does not wrap ErrBadURL", err)
			}
			return
		}
		if len(o.Addrs) == 0 {
			t.Fatalf("ParseURL(%q) accepted without addresses", raw)
		}
		r, err := NewRedis(o)
		if err == nil {
			r.Close()
		}
	})
}

func TestOpen(t *testing.T) {
	for _, raw := range []string{"memory:", "mem://", "memory://", " mem: "} {
		d, err := Open(t.Context(), raw)
		if err != nil || d != Shared() {
			t.Fatalf("Open(%q) = %v, %v; want Shared()", raw, d, err)
		}
	}
	if _, err := Open(t.Context(), "nope://x"); !errors.Is(err, ErrBadURL) {
		t.Fatalf("Open(bad) = %v", err)
	}
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Open(canceled, "memory:"); err == nil {
		t.Fatal("Open with a done ctx succeeded")
	}

	srv := redistest.Start(t)
	d, err := Open(t.Context(), srv.URL()+"?prefix=open")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, ok := d.(*Redis); !ok {
		t.Fatalf("Open(redis URL) = %T", d)
	}
	if err := d.Register(t.Context(), reg("s1", "10.0.0.1", 1), time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := servers(t, d, key); len(got) != 1 {
		t.Fatalf("got %v", got)
	}
	l, ok := d.(Lister)
	if !ok {
		t.Fatal("Open's Redis is not a Lister")
	}
	if es, err := l.List(t.Context()); err != nil || len(es) != 1 {
		t.Fatalf("List = %v, %v", es, err)
	}
}
