package envelope_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/zmqmsg/zmqmsg/envelope"
)

// specPath is the wire spec, docs/design.md, from this package's directory.
const specPath = "../docs/design.md"

// TestWireSpec keeps §5 of docs/design.md honest: its kind, code, flag and
// limit tables must match this package, every kind and every code must have
// an example, and every example (a ```wire block, format described in the
// doc) must decode to the fields it states and re-encode to its bytes.
func TestWireSpec(t *testing.T) {
	raw, err := os.ReadFile(specPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")

	t.Run("kinds", func(t *testing.T) {
		seen := map[envelope.Kind]bool{}
		for _, r := range specTable(t, lines, "kinds") {
			n, err := strconv.Atoi(r.cells[0])
			k := envelope.Kind(n)
			switch {
			case err != nil || n < 0 || n > 255:
				t.Errorf("line %d: kind number %q", r.line, r.cells[0])
			case !k.Valid():
				t.Errorf("line %d: kind %d is not defined by package envelope", r.line, n)
			case seen[k]:
				t.Errorf("line %d: kind %d listed twice", r.line, n)
			case unquote(r.cells[1]) != k.String():
				t.Errorf("line %d: kind %d is named %s, not %s", r.line, n, k, r.cells[1])
			}
			seen[k] = true
		}
		for k := envelope.Kind(1); k.Valid(); k++ {
			if !seen[k] {
				t.Errorf("kind %d %s is missing from the doc's kind table", k, k)
			}
		}
	})

	t.Run("codes", func(t *testing.T) {
		seen := map[envelope.Code]bool{}
		for _, r := range specTable(t, lines, "codes") {
			n, err := strconv.Atoi(r.cells[0])
			c := envelope.Code(n)
			switch {
			case err != nil || n < 0 || n > 65535:
				t.Errorf("line %d: code number %q", r.line, r.cells[0])
			case !codeDefined(c):
				t.Errorf("line %d: code %d is not defined by package envelope", r.line, n)
			case seen[c]:
				t.Errorf("line %d: code %d listed twice", r.line, n)
			case unquote(r.cells[1]) != c.String():
				t.Errorf("line %d: code %d is named %s, not %s", r.line, n, c, r.cells[1])
			}
			seen[c] = true
		}
		for c := envelope.Code(0); codeDefined(c); c++ {
			if !seen[c] {
				t.Errorf("code %d %s is missing from the doc's code table", c, c)
			}
		}
	})

	t.Run("flags", func(t *testing.T) {
		seen := map[string]bool{}
		for _, r := range specTable(t, lines, "flags") {
			name := unquote(r.cells[2])
			f, ok := flagNames[name]
			if !ok {
				t.Errorf("line %d: flag %q is not defined by package envelope", r.line, name)
				continue
			}
			if r.cells[0] != strconv.Itoa(bitOf(f)) || unquote(r.cells[1]) != fmt.Sprintf("0x%02x", uint8(f)) {
				t.Errorf("line %d: flag %s is bit %d, mask 0x%02x", r.line, name, bitOf(f), uint8(f))
			}
			seen[name] = true
		}
		for name := range flagNames {
			if !seen[name] {
				t.Errorf("flag %s is missing from the doc's flag table", name)
			}
		}
	})

	t.Run("limits", func(t *testing.T) {
		want := map[string]int{
			"envelope.Version":          int(envelope.Version),
			"envelope.MaxStringLen":     envelope.MaxStringLen,
			"envelope.MaxMetaEntries":   envelope.MaxMetaEntries,
			"envelope.MaxRoutingFrames": envelope.MaxRoutingFrames,
		}
		for _, r := range specTable(t, lines, "limits") {
			name := unquote(r.cells[2])
			v, ok := want[name]
			if !ok {
				continue // a limit set outside this package
			}
			if r.cells[1] != strconv.Itoa(v) {
				t.Errorf("line %d: %s is %d, the doc says %s", r.line, name, v, r.cells[1])
			}
			delete(want, name)
		}
		for name := range want {
			t.Errorf("%s is missing from the doc's limits table", name)
		}
	})

	t.Run("links", func(t *testing.T) {
		anchors := map[string]bool{}
		for _, l := range lines {
			if title, ok := strings.CutPrefix(strings.TrimLeft(l, "#"), " "); ok && strings.HasPrefix(l, "##") {
				anchors[slug(title)] = true
			}
		}
		for i, l := range lines {
			for _, m := range linkRe.FindAllStringSubmatch(l, -1) {
				if !anchors[m[1]] {
					t.Errorf("line %d: no heading for the link #%s", i+1, m[1])
				}
			}
		}
	})

	examples := parseExamples(t, lines)
	for _, ex := range examples {
		t.Run("example/"+ex.name, ex.check)
	}

	t.Run("coverage", func(t *testing.T) {
		kinds := map[envelope.Kind]bool{}
		codes := map[envelope.Code]bool{}
		for _, ex := range examples {
			last := ex.frames[len(ex.frames)-1]
			m, err := envelope.Decode(last.data)
			if last.role != "body" || err != nil {
				continue
			}
			kinds[m.Kind] = true
			if m.Kind == envelope.KindAck || m.Kind == envelope.KindError {
				codes[m.Code] = true
			}
		}
		for k := envelope.Kind(1); k.Valid(); k++ {
			if !kinds[k] {
				t.Errorf("no example of kind %s in %s", k, specPath)
			}
		}
		for c := envelope.Code(0); codeDefined(c); c++ {
			if !codes[c] {
				t.Errorf("no example of an ACK or ERROR with code %s in %s", c, specPath)
			}
		}
	})
}

// codeDefined reports whether package envelope names c.
func codeDefined(c envelope.Code) bool { return !strings.HasPrefix(c.String(), "Code(") }

// flagNames maps the doc's flag names to the flags.
var flagNames = map[string]envelope.Flags{"RAW": envelope.FlagRaw, "NO_ACK": envelope.FlagNoAck}

func bitOf(f envelope.Flags) int {
	for i := range 8 {
		if f == 1<<i {
			return i
		}
	}
	return -1
}

// linkRe matches a link to a heading of the same file.
var linkRe = regexp.MustCompile(`\]\(#([^)]+)\)`)

// slug is GitHub's anchor for a heading: lower case, letters, digits, '-'
// and '_' kept, spaces made '-', the rest dropped.
func slug(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		switch {
		case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// unquote strips the backticks around a table cell.
func unquote(cell string) string { return strings.Trim(cell, "`") }

type tableRow struct {
	line  int // 1-based
	cells []string
}

// specTable returns the body rows of the first table after the line
// "<!-- spec:NAME -->".
func specTable(t *testing.T, lines []string, name string) []tableRow {
	t.Helper()
	marker := "<!-- spec:" + name + " -->"
	start := slices.Index(lines, marker)
	if start < 0 {
		t.Fatalf("%s has no %s", specPath, marker)
	}
	var rows []tableRow
	i := start + 1
	for i < len(lines) && strings.TrimSpace(lines[i]) == "" {
		i++
	}
	for ; i < len(lines) && strings.HasPrefix(lines[i], "|"); i++ {
		rows = append(rows, tableRow{i + 1, splitRow(lines[i])})
	}
	if len(rows) < 3 {
		t.Fatalf("line %d: no table after %s", start+1, marker)
	}
	rows = rows[2:] // header and separator
	for _, r := range rows {
		if len(r.cells) < 3 {
			t.Fatalf("line %d: fewer than 3 cells", r.line)
		}
	}
	return rows
}

// splitRow splits a markdown table row on its unescaped pipes.
func splitRow(line string) []string {
	var cells []string
	var cur strings.Builder
	for i := 0; i < len(line); i++ {
		switch {
		case line[i] == '\\' && i+1 < len(line) && line[i+1] == '|':
			cur.WriteByte('|')
			i++
		case line[i] == '|':
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(line[i])
		}
	}
	if len(cells) > 0 {
		cells = cells[1:] // before the leading pipe
	}
	return cells
}

// An example is one ```wire block of the doc.
type example struct {
	name   string
	line   int // of the opening fence, 1-based
	frames []frame
	expect []string // the "expect" lines, without the word
}

type frame struct {
	role string // routing, body, topic or subscribe
	data []byte
	line int
}

var (
	frameRe = regexp.MustCompile(`^frame (routing|body|topic|subscribe) \((\d+) bytes?\)$`)
	dumpRe  = regexp.MustCompile(`^  ([0-9a-f]{4})  ([0-9a-f ]+?) +\|`)
)

// parseExamples parses every ```wire block.
func parseExamples(t *testing.T, lines []string) []*example {
	t.Helper()
	var out []*example
	var ex *example
	names := map[string]bool{}
	fail := func(i int, format string, args ...any) {
		t.Fatalf("%s:%d: %s", specPath, i+1, fmt.Sprintf(format, args...))
	}
	for i, l := range lines {
		switch {
		case ex == nil:
			if l == "```wire" {
				ex = &example{line: i + 1}
			}
		case l == "```":
			if ex.name == "" || len(ex.frames) == 0 {
				fail(i, "a wire block without its example name or frames")
			}
			out = append(out, ex)
			ex = nil
		case strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "example "):
			ex.name = strings.TrimPrefix(l, "example ")
			if names[ex.name] || ex.name == "" || strings.ContainsAny(ex.name, " /") {
				fail(i, "example name %q is empty, has a space or slash, or is not unique", ex.name)
			}
			names[ex.name] = true
		case strings.HasPrefix(l, "frame "):
			m := frameRe.FindStringSubmatch(l)
			if m == nil {
				fail(i, "want \"frame ROLE (N bytes)\", got %q", l)
			}
			n, _ := strconv.Atoi(m[2])
			ex.frames = append(ex.frames, frame{role: m[1], data: make([]byte, 0, n), line: i + 1})
		case strings.HasPrefix(l, "  "):
			if len(ex.frames) == 0 {
				fail(i, "a dump line before any frame line")
			}
			f := &ex.frames[len(ex.frames)-1]
			if err := parseDumpLine(l, f); err != nil {
				fail(i, "%v", err)
			}
		case strings.HasPrefix(l, "expect "):
			ex.expect = append(ex.expect, strings.TrimPrefix(l, "expect "))
		default:
			fail(i, "cannot parse %q in a wire block", l)
		}
	}
	if ex != nil {
		t.Fatalf("%s:%d: unterminated wire block", specPath, ex.line)
	}
	for _, ex := range out {
		for _, f := range ex.frames {
			if len(f.data) != cap(f.data) {
				t.Fatalf("%s:%d: frame of %d bytes, its line says %d", specPath, f.line, len(f.data), cap(f.data))
			}
		}
	}
	return out
}

// parseDumpLine appends one line of a hex dump (offset, up to 16 bytes,
// their ASCII between pipes) to f.
func parseDumpLine(l string, f *frame) error {
	m := dumpRe.FindStringSubmatch(l)
	if m == nil || !strings.HasSuffix(l, "|") {
		return fmt.Errorf("want \"  OFFS  HEX BYTES  |ASCII|\", got %q", l)
	}
	off, _ := strconv.ParseUint(m[1], 16, 16)
	if int(off) != len(f.data) || len(f.data)%16 != 0 {
		return fmt.Errorf("offset %04x, want %04x (16 bytes a line)", off, len(f.data))
	}
	var b []byte
	for _, tok := range strings.Fields(m[2]) {
		v, err := hex.DecodeString(tok)
		if err != nil || len(v) != 1 {
			return fmt.Errorf("bad hex byte %q", tok)
		}
		b = append(b, v[0])
	}
	if len(b) == 0 || len(b) > 16 {
		return fmt.Errorf("%d bytes on a line", len(b))
	}
	if ascii := l[len(m[0]) : len(l)-1]; ascii != asciiOf(b) {
		return fmt.Errorf("ASCII column %q, the bytes are %q", ascii, asciiOf(b))
	}
	f.data = append(f.data, b...)
	return nil
}

func asciiOf(b []byte) string {
	s := []byte(string(b))
	for i, c := range s {
		if c < 0x20 || c > 0x7e {
			s[i] = '.'
		}
	}
	return string(s)
}

// roles returns the frame roles of ex, space separated.
func (ex *example) roles() string {
	var r []string
	for _, f := range ex.frames {
		r = append(r, f.role)
	}
	return strings.Join(r, " ")
}

var layoutRe = regexp.MustCompile(`^((routing )*body|topic body|subscribe)$`)

// check decodes ex and compares it with its expect lines and bytes.
func (ex *example) check(t *testing.T) {
	t.Logf("%s:%d", specPath, ex.line)
	roles := ex.roles()
	if !layoutRe.MatchString(roles) {
		t.Fatalf("frames %q: want routing... body, topic body, or subscribe", roles)
	}
	want, err := parseExpect(ex.expect, roles == "subscribe")
	if err != nil {
		t.Fatal(err)
	}
	if !ex.matches(t, want) {
		ex.printWant(t, want)
	}
}

// matches reports whether the frames of ex are what want and the package
// make of them, saying why not.
func (ex *example) matches(t *testing.T, want envelope.Message) bool {
	frames := make([][]byte, len(ex.frames))
	for i, f := range ex.frames {
		frames[i] = f.data
	}
	switch ex.frames[0].role {
	case "subscribe":
		// 1 (subscribe) or 0, then the topic frame.
		if !bytes.Equal(frames[0], subscription(want)) {
			t.Errorf("subscription frame % x, its expect lines give % x", frames[0], subscription(want))
			return false
		}
		return true
	case "topic":
		if topic := envelope.FanoutTopic(want.Exchange, want.Topic); !bytes.Equal(frames[0], topic) {
			t.Errorf("topic frame % x, want FanoutTopic(%q, %q) = % x", frames[0], want.Exchange, want.Topic, topic)
			return false
		}
		frames = frames[1:]
	}
	routing, body, err := envelope.SplitRouting(frames)
	if err != nil {
		t.Errorf("SplitRouting: %v", err)
		return false
	}
	if len(routing) != len(frames)-1 {
		t.Errorf("SplitRouting: %d routing frames, the doc shows %d", len(routing), len(frames)-1)
		return false
	}
	got, err := envelope.Decode(body)
	if err != nil {
		t.Errorf("Decode: %v", err)
		return false
	}
	if g := expectLines(&got); !slices.Equal(g, ex.expect) {
		t.Errorf("the dump decodes to\n\texpect %s\nthe doc says\n\texpect %s",
			strings.Join(g, "\n\texpect "), strings.Join(ex.expect, "\n\texpect "))
		return false
	}
	if again, err := envelope.Encode(&got); err != nil || !bytes.Equal(again, body) {
		t.Errorf("re-encoding the decoded message gives other bytes (err %v)", err)
		return false
	}
	return true
}

// subscription encodes a subscription frame; m.Code carries the on/off byte.
func subscription(m envelope.Message) []byte {
	return envelope.AppendFanoutTopic([]byte{byte(m.Code)}, m.Exchange, m.Topic)
}

// printWant logs the block the expect lines call for, from the encoder.
func (ex *example) printWant(t *testing.T, want envelope.Message) {
	var b strings.Builder
	b.WriteString("```wire\nexample " + ex.name + "\n")
	for _, f := range ex.frames {
		data := f.data
		switch f.role {
		case "body":
			data, _ = envelope.Encode(&want)
		case "topic":
			data = envelope.FanoutTopic(want.Exchange, want.Topic)
		case "subscribe":
			data = subscription(want)
		}
		b.WriteString(dump(f.role, data))
	}
	for _, l := range ex.expect {
		b.WriteString("expect " + l + "\n")
	}
	b.WriteString("```\n")
	t.Logf("the block its expect lines call for:\n%s", b.String())
}

// dump formats one frame of a wire block.
func dump(role string, data []byte) string {
	var b strings.Builder
	unit := "bytes"
	if len(data) == 1 {
		unit = "byte"
	}
	fmt.Fprintf(&b, "frame %s (%d %s)\n", role, len(data), unit)
	for off := 0; off < len(data); off += 16 {
		line := data[off:min(off+16, len(data))]
		fmt.Fprintf(&b, "  %04x  ", off)
		for i := range 16 {
			switch {
			case i < len(line):
				fmt.Fprintf(&b, "%02x ", line[i])
			default:
				b.WriteString("   ")
			}
			if i == 7 {
				b.WriteByte(' ')
			}
		}
		fmt.Fprintf(&b, " |%s|\n", asciiOf(line))
	}
	return b.String()
}

// expectFields are the fields an expect line may name, in the order
// expectLines writes them.
var expectFields = []string{"subscribe", "kind", "flags", "id", "deadline", "exchange", "topic", "server", "method", "code", "errtype", "errmsg", "meta", "payload"}

// expectLines returns the canonical expect lines of m: every field that is
// not zero, in expectFields order, and the code of every ACK and ERROR.
func expectLines(m *envelope.Message) []string {
	var out []string
	add := func(field, value string) { out = append(out, field+" "+value) }
	add("kind", m.Kind.String())
	if m.Flags != 0 {
		var names []string
		for _, n := range []string{"RAW", "NO_ACK"} {
			if m.Flags&flagNames[n] != 0 {
				names = append(names, n)
			}
		}
		if rest := m.Flags &^ (envelope.FlagRaw | envelope.FlagNoAck); rest != 0 {
			names = append(names, fmt.Sprintf("0x%02x", uint8(rest)))
		}
		add("flags", strings.Join(names, "|"))
	}
	if !m.ID.IsZero() {
		add("id", m.ID.String())
	}
	if m.Deadline != 0 {
		add("deadline", strconv.FormatInt(m.Deadline, 10))
	}
	for _, s := range []struct{ name, v string }{{"exchange", m.Exchange}, {"topic", m.Topic}, {"server", m.Server}, {"method", m.Method}} {
		if s.v != "" {
			add(s.name, strconv.Quote(s.v))
		}
	}
	if m.Code != 0 || m.Kind == envelope.KindAck || m.Kind == envelope.KindError {
		add("code", m.Code.String())
	}
	for _, s := range []struct{ name, v string }{{"errtype", m.ErrType}, {"errmsg", m.ErrMsg}} {
		if s.v != "" {
			add(s.name, strconv.Quote(s.v))
		}
	}
	keys := make([]string, 0, len(m.Meta))
	for k := range m.Meta {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		add("meta", strconv.Quote(k)+" "+strconv.Quote(m.Meta[k]))
	}
	if len(m.Payload) > 0 {
		add("payload", strconv.Quote(string(m.Payload)))
	}
	return out
}

// parseExpect builds the message that expect lines describe. For a
// subscription (sub) only subscribe, exchange and topic are allowed, and
// the subscribe value goes into Code.
func parseExpect(lines []string, sub bool) (envelope.Message, error) {
	var m envelope.Message
	for _, l := range lines {
		field, v, _ := strings.Cut(l, " ")
		allowed := slices.Contains(expectFields, field) && field != "subscribe"
		if sub {
			allowed = field == "subscribe" || field == "exchange" || field == "topic"
		}
		if !allowed {
			return m, fmt.Errorf("expect %q: unknown field here", l)
		}
		var err error
		switch field {
		case "subscribe":
			switch v {
			case "1", "0":
				m.Code = envelope.Code(v[0] - '0')
			default:
				err = fmt.Errorf("want 1 or 0")
			}
		case "kind":
			err = fmt.Errorf("unknown kind")
			for k := envelope.Kind(1); k.Valid(); k++ {
				if k.String() == v {
					m.Kind, err = k, nil
				}
			}
		case "flags":
			for _, n := range strings.Split(v, "|") {
				f, ok := flagNames[n]
				if !ok {
					err = fmt.Errorf("unknown flag %q", n)
				}
				m.Flags |= f
			}
		case "id":
			var b []byte
			b, err = hex.DecodeString(strings.ReplaceAll(v, "-", ""))
			if err == nil && len(b) != len(m.ID) {
				err = fmt.Errorf("%d bytes", len(b))
			}
			copy(m.ID[:], b)
		case "deadline":
			m.Deadline, err = strconv.ParseInt(v, 10, 64)
		case "code":
			err = fmt.Errorf("unknown code")
			for c := envelope.Code(0); codeDefined(c); c++ {
				if c.String() == v {
					m.Code, err = c, nil
				}
			}
		case "meta":
			var k, val string
			k, val, err = twoQuoted(v)
			if m.Meta == nil {
				m.Meta = map[string]string{}
			}
			m.Meta[k] = val
		default:
			var s string
			s, err = strconv.Unquote(v)
			switch field {
			case "exchange":
				m.Exchange = s
			case "topic":
				m.Topic = s
			case "server":
				m.Server = s
			case "method":
				m.Method = s
			case "errtype":
				m.ErrType = s
			case "errmsg":
				m.ErrMsg = s
			case "payload":
				m.Payload = []byte(s)
			}
		}
		if err != nil {
			return m, fmt.Errorf("expect %q: %v", l, err)
		}
	}
	return m, nil
}

// twoQuoted parses `"key" "value"`.
func twoQuoted(s string) (string, string, error) {
	q1, err := strconv.QuotedPrefix(s)
	if err != nil {
		return "", "", err
	}
	rest := strings.TrimPrefix(s[len(q1):], " ")
	if q2, err := strconv.QuotedPrefix(rest); err != nil || q2 != rest {
		return "", "", fmt.Errorf("want two quoted strings")
	}
	k, _ := strconv.Unquote(q1)
	v, _ := strconv.Unquote(rest)
	return k, v, nil
}
