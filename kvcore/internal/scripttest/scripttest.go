// Package scripttest runs the data-driven scripts of webkv's state
// machines without I/O (kvcore/psm, kvcore/internal/wsm) on
// github.com/cockroachdb/datadriven, as etcd-raft does.
//
// A script is a file of directives, each a block of command lines, "----"
// and the exact output those commands print, ended by a blank line:
//
//	# A comment before a block.
//	push a seq=2 key=3 round=0 vals=1,1
//	pushpull b seq=3 key=3 round=0 vals=2,3
//	----
//	a ack seq=2 key=3 round=0
//	b ack seq=3 key=3 round=0 vals=3,4
//
// Every command line is parsed by datadriven.ParseLine: a command, then
// arguments that are words ("a") or key=value pairs. The first line of a
// block is datadriven's directive; the lines after it (its input) run in
// order as commands too, and lines that start with '#' among them are
// skipped. A block's output is what its commands print, in order, with the
// trailing newlines cut. Run the tests with -rewrite to write the outputs
// the code prints now into the scripts, after reviewing the change.
package scripttest

import (
	"encoding/hex"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// Run runs every script that glob matches, each as a subtest named by its
// file name. For each file, setup makes the state its commands share and
// returns the function that runs one command and returns what it prints.
func Run(t *testing.T, glob string, setup func(t *testing.T) func(*Line) string) {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts match %s (%v)", glob, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			do := setup(t)
			datadriven.RunTest(t, f, func(t *testing.T, d *datadriven.TestData) string {
				return directive(t, d, do)
			})
		})
	}
}

// directive runs one directive: its command line, then each command line
// of its input; it returns their outputs, joined, without trailing
// newlines.
func directive(t testing.TB, d *datadriven.TestData, do func(*Line) string) string {
	t.Helper()
	var out strings.Builder
	out.WriteString(do(&Line{Cmd: d.Cmd, Args: d.CmdArgs, Pos: d.Pos, t: t}))
	for i, text := range strings.Split(d.Input, "\n") {
		text = strings.TrimSpace(text)
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		out.WriteString(do(parse(t, d.Pos+"+"+strconv.Itoa(i+1), text)))
	}
	return strings.TrimRight(out.String(), "\n")
}

// Line is one command of a script. Its methods read arguments; a malformed
// one fails the test at the line's position.
type Line struct {
	Cmd  string
	Args []datadriven.CmdArg
	Pos  string // file:line of the block, "+n" for the n-th line after it
	t    testing.TB
}

// Parse parses text, a command line of a script, outside a script (a fuzz
// target's seed frames, say).
func Parse(t testing.TB, text string) *Line {
	t.Helper()
	return parse(t, "scripttest.Parse", text)
}

// Sub parses text (a command and its arguments) as a line at l's position,
// for commands that carry lists of commands.
func (l *Line) Sub(text string) *Line { return parse(l.t, l.Pos, text) }

func parse(t testing.TB, pos, text string) *Line {
	t.Helper()
	cmd, args, err := datadriven.ParseLine(text)
	if err != nil || cmd == "" {
		t.Fatalf("%s: %q: not a command line (%v)", pos, text, err)
	}
	return &Line{Cmd: cmd, Args: args, Pos: pos, t: t}
}

// Word returns the i-th argument as written ("a", "0", "seq=1"), or "" when
// the line has fewer.
func (l *Line) Word(i int) string {
	if i >= len(l.Args) {
		return ""
	}
	return l.Args[i].String()
}

// Words returns the arguments from the i-th on, as written.
func (l *Line) Words(from int) []string {
	var w []string
	for i := from; i < len(l.Args); i++ {
		w = append(w, l.Args[i].String())
	}
	return w
}

// WordNum returns the i-th argument as a number ("tick 100").
func (l *Line) WordNum(i int) uint64 { return l.num(l.Word(i), "argument "+strconv.Itoa(i+1)) }

// Get returns the value of key and whether the line has key, as key=value
// or as a word; the last one counts.
func (l *Line) Get(key string) (string, bool) {
	for i := len(l.Args) - 1; i >= 0; i-- {
		a := l.Args[i]
		if a.Key != key {
			continue
		}
		switch len(a.Vals) {
		case 0:
			return "", true
		case 1:
			return a.Vals[0], true
		}
		l.t.Fatalf("%s: %s: one value expected", l.Pos, a)
	}
	return "", false
}

// Has reports whether the line has key, as key=value or as a word.
func (l *Line) Has(key string) bool {
	_, ok := l.Get(key)
	return ok
}

// Str returns the value of key, "" when absent.
func (l *Line) Str(key string) string {
	v, _ := l.Get(key)
	return v
}

// Num returns the integer value of key, 0 when absent; a negative value
// wraps (key=-1 is the uint64 key id of -1).
func (l *Line) Num(key string) uint64 {
	v, ok := l.Get(key)
	if !ok {
		return 0
	}
	return l.num(v, key)
}

func (l *Line) num(v, what string) uint64 {
	i, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		l.t.Fatalf("%s: %s=%q: not a number", l.Pos, what, v)
	}
	return uint64(i)
}

// Int returns Num as an int.
func (l *Line) Int(key string) int { return int(l.Num(key)) }

// Float returns the value of key as a float64, 0 when absent.
func (l *Line) Float(key string) float64 {
	v, ok := l.Get(key)
	if !ok {
		return 0
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		l.t.Fatalf("%s: %s=%q: not a number", l.Pos, key, v)
	}
	return f
}

// Ints returns the comma-separated integers of key ("shape=2,3"), nil when
// absent or empty.
func (l *Line) Ints(key string) []int64 {
	return each(l, key, "an integer", func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) })
}

// Uint32s returns the comma-separated unsigned integers of key
// ("rows=0,4"), nil when absent or empty.
func (l *Line) Uint32s(key string) []uint32 {
	return each(l, key, "a uint32", func(s string) (uint32, error) {
		u, err := strconv.ParseUint(s, 10, 32)
		return uint32(u), err
	})
}

// Float32s returns the comma-separated float32s of key ("vals=1,2.5"), nil
// when absent or empty.
func (l *Line) Float32s(key string) []float32 { return l.ParseFloat32s(l.Str(key), ",") }

// ParseFloat32s parses float32s separated by sep ("1/2.5" in a list
// entry), nil for "".
func (l *Line) ParseFloat32s(s, sep string) []float32 {
	if s == "" {
		return nil
	}
	var r []float32
	for _, x := range strings.Split(s, sep) {
		f, err := strconv.ParseFloat(x, 32)
		if err != nil {
			l.t.Fatalf("%s: %q is not a float32", l.Pos, x)
		}
		r = append(r, float32(f))
	}
	return r
}

// Bits returns the comma-separated hex words of key as float32s with those
// bits ("words=aaaa0000,1": quantized payloads), nil when absent or empty.
func (l *Line) Bits(key string) []float32 {
	return each(l, key, "a 32-bit hex word", func(s string) (float32, error) {
		u, err := strconv.ParseUint(s, 16, 32)
		return math.Float32frombits(uint32(u)), err
	})
}

// Hex returns the bytes that the hex value of key spells ("hex=00ff").
func (l *Line) Hex(key string) []byte {
	b, err := hex.DecodeString(l.Str(key))
	if err != nil {
		l.t.Fatalf("%s: %s: %v", l.Pos, key, err)
	}
	return b
}

// each parses the comma-separated values of key.
func each[T any](l *Line, key, what string, parse func(string) (T, error)) []T {
	v := l.Str(key)
	if v == "" {
		return nil
	}
	var r []T
	for _, s := range strings.Split(v, ",") {
		x, err := parse(s)
		if err != nil {
			l.t.Fatalf("%s: %s: %q is not %s", l.Pos, key, s, what)
		}
		r = append(r, x)
	}
	return r
}

// FormatFloat32s prints v as the scripts write values: comma-separated,
// each in the shortest form that reads back as the same float32.
func FormatFloat32s(v []float32) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(float64(x), 'g', -1, 32)
	}
	return strings.Join(s, ",")
}
