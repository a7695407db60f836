package config

import (
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDefaultsAreIdempotentAndValid(t *testing.T) {
	c := Config{}.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	again := c.WithDefaults()
	if again.Ports != c.Ports || again.Acks != c.Acks || again.Keepalive != c.Keepalive || again.CallTimeout != c.CallTimeout {
		t.Fatalf("WithDefaults twice changed the config: %+v, then %+v", c, again)
	}
	if c.Ports != (Ports{9501, 9502, 9503, 9504}) || c.Acks.Retries != 3 || c.Acks.Resends() != 3 {
		t.Fatalf("defaults: %+v", c)
	}
	if p := (Config{Ports: Ports{Call: AnyPort}}).WithDefaults().Ports; p != (Ports{AnyPort, AnyPort, AnyPort, AnyPort}) {
		t.Fatalf("AnyPort call port: %+v, want AnyPort throughout", p)
	}
	if r := (Config{Acks: AckPolicy{Retries: -1}}).WithDefaults().Acks; r.Retries != -1 || r.Resends() != 0 {
		t.Fatalf("Retries -1: %+v, want none", r)
	}
}

func TestValidateNamesTheField(t *testing.T) {
	for name, c := range map[string]Config{
		"call port":   {Ports: Ports{Call: 70000}},
		"notify port": {Ports: Ports{Notify: -5}},
		"size":        {MaxMessageSize: -1},
		"queue":       {ServerQueue: -1},
		"duration":    {ConnectTimeout: -time.Second},
		"window":      {CastWindow: -1},
		"acks":        {Acks: AckPolicy{Multiplier: 0.5}},
		"strategy":    {WaitStrategy: 7},
	} {
		err := c.WithDefaults().Validate()
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
	bad := Config{Security: &Security{PublicKey: "short", SecretKey: "short"}}
	if err := bad.WithDefaults().Validate(); !errors.Is(err, ErrBadKey) {
		t.Errorf("bad key: %v, want ErrBadKey", err)
	}
}

func TestProxyConfigSharesTheNodeDefaults(t *testing.T) {
	p := ProxyConfig{Dir: "/tmp/x"}.WithDefaults()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if p.Ports != (Ports{9501, 9502, 9503, 9504}) || p.DirMode != 0o700 || p.Logger == nil || p.Node().ConnectTimeout != 2*time.Second {
		t.Fatalf("daemon defaults: %+v", p)
	}
	for name, c := range map[string]ProxyConfig{
		"no dir":   {},
		"ttl":      {Dir: "d", MemberTTL: -1},
		"dir mode": {Dir: "d", DirMode: 0o4700},
		"port":     {Dir: "d", Ports: Ports{Cast: 0x10000}},
	} {
		if err := c.WithDefaults().Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
}

func TestTestHooksAreSharedByCopies(t *testing.T) {
	var c Config
	if h := c.Hooks(); h.DropAck != nil || h.IdleSweep != 0 {
		t.Fatal("hooks set on a zero Config")
	}
	EditTestHooks(&c).IdleSweep = time.Millisecond
	if d := c.WithDefaults().Hooks().IdleSweep; d != time.Millisecond {
		t.Fatalf("IdleSweep after WithDefaults = %v", d)
	}
}
