// Package wat assembles the subset of the WebAssembly text format that
// webkv's SIMD kernels (../../kernels.wat) are written in into a binary
// module, so the committed .wasm is produced from the committed .wat by Go
// alone (go generate), reproducibly, with no other toolchain.
//
// The subset: a module of memory imports, function types, one funcref
// table with one active element segment, functions (with inline exports,
// named params, results and locals), and function exports. Instructions may
// be written flat or folded, with named or numeric labels, locals, functions
// and types. Only the instructions listed in ops are known (MVP control,
// locals, the i32/i64/f32/f64 arithmetic and memory instructions kernels
// use, and the simd128 proposal's); anything else is an error naming the
// line. The bytes are those of wabt's wat2wasm for the same text (without
// its name section), which the tests of the kernels check when wabt is at
// hand.
package wat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Assemble returns the binary module of the WAT text src.
func Assemble(src []byte) ([]byte, error) {
	root, err := parse(string(src))
	if err != nil {
		return nil, err
	}
	if len(root) != 1 || !root[0].isList() || root[0].head() != "module" {
		return nil, errors.New("wat: the text must be one (module ...)")
	}
	m := &module{typeIdx: map[string]int{}, funcIdx: map[string]int{}}
	if err := m.collect(root[0]); err != nil {
		return nil, err
	}
	return m.encode()
}

// --- S-expressions ---

type node struct {
	atom string // "" for a list
	str  bool   // atom is a string literal (unquoted, unescaped)
	kids []*node
	line int
	list bool
}

func (n *node) isList() bool { return n.list }

// head is the first atom of a list ("" if none).
func (n *node) head() string {
	if !n.list || len(n.kids) == 0 || n.kids[0].list {
		return ""
	}
	return n.kids[0].atom
}

func errAt(line int, format string, a ...any) error {
	return fmt.Errorf("wat: line %d: %s", line, fmt.Sprintf(format, a...))
}

func parse(s string) ([]*node, error) {
	var stack [][]*node
	var lines []int
	var cur []*node
	line := 1
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == ';' && i+1 < len(s) && s[i+1] == ';':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '(' && i+1 < len(s) && s[i+1] == ';':
			depth := 0
			for {
				if i+1 >= len(s) {
					return nil, errAt(line, "unterminated block comment")
				}
				if s[i] == '(' && s[i+1] == ';' {
					depth++
					i += 2
					continue
				}
				if s[i] == ';' && s[i+1] == ')' {
					depth--
					i += 2
					if depth == 0 {
						break
					}
					continue
				}
				if s[i] == '\n' {
					line++
				}
				i++
			}
		case c == '(':
			stack = append(stack, cur)
			lines = append(lines, line)
			cur = nil
			i++
		case c == ')':
			if len(stack) == 0 {
				return nil, errAt(line, "unbalanced )")
			}
			n := &node{kids: cur, line: lines[len(lines)-1], list: true}
			cur = append(stack[len(stack)-1], n)
			stack, lines = stack[:len(stack)-1], lines[:len(lines)-1]
			i++
		case c == '"':
			j := i + 1
			var b strings.Builder
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' {
					return nil, errAt(line, "escapes in strings are not supported")
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, errAt(line, "unterminated string")
			}
			cur = append(cur, &node{atom: b.String(), str: true, line: line})
			i = j + 1
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\r\n()\";", rune(s[j])) {
				j++
			}
			cur = append(cur, &node{atom: s[i:j], line: line})
			i = j
		}
	}
	if len(stack) != 0 {
		return nil, errAt(lines[len(lines)-1], "unbalanced (")
	}
	return cur, nil
}

// --- module ---

const (
	tI32  = 0x7f
	tI64  = 0x7e
	tF32  = 0x7d
	tF64  = 0x7c
	tV128 = 0x7b
)

var valTypes = map[string]byte{"i32": tI32, "i64": tI64, "f32": tF32, "f64": tF64, "v128": tV128}

type funcType struct{ params, results []byte }

func (t funcType) key() string { return string(t.params) + "|" + string(t.results) }

type memImport struct {
	mod, name string
	min       uint32
	max       int64 // -1: none
}

type function struct {
	name     string
	typ      int
	params   []byte
	results  []byte
	locals   []byte
	localIdx map[string]int
	body     []*node
	line     int
}

type module struct {
	types   []funcType
	typeIdx map[string]int // $name -> index
	mems    []memImport
	funcs   []*function
	funcIdx map[string]int
	exports []export
	table   *struct{ min uint32 }
	elem    *struct {
		offset int32
		funcs  []*node
	}
}

type export struct {
	name string
	kind byte
	ref  *node // function reference, resolved at encoding
	idx  int
}

// internType returns the index of t, appending it if no type equals it.
func (m *module) internType(t funcType) int {
	for i, u := range m.types {
		if u.key() == t.key() {
			return i
		}
	}
	m.types = append(m.types, t)
	return len(m.types) - 1
}

// collect reads the module fields: explicit types first (they keep their
// places, as in wat2wasm), then everything else in order.
func (m *module) collect(mod *node) error {
	fields := mod.kids[1:]
	for _, f := range fields {
		if !f.isList() {
			return errAt(f.line, "unexpected %q in module", f.atom)
		}
		if f.head() != "type" {
			continue
		}
		k := f.kids[1:]
		name := ""
		if len(k) > 0 && !k[0].list && strings.HasPrefix(k[0].atom, "$") {
			name, k = k[0].atom, k[1:]
		}
		if len(k) != 1 || k[0].head() != "func" {
			return errAt(f.line, "type: want (type $name? (func ...))")
		}
		ft, _, err := signature(k[0].kids[1:], false)
		if err != nil {
			return err
		}
		m.types = append(m.types, ft)
		if name != "" {
			m.typeIdx[name] = len(m.types) - 1
		}
	}
	for _, f := range fields {
		switch f.head() {
		case "type":
		case "import":
			if err := m.importField(f); err != nil {
				return err
			}
		case "func":
			if err := m.funcField(f); err != nil {
				return err
			}
		case "table":
			k := f.kids[1:]
			if len(k) > 0 && strings.HasPrefix(k[0].atom, "$") {
				k = k[1:]
			}
			if len(k) != 2 || k[1].atom != "funcref" || m.table != nil {
				return errAt(f.line, "table: want one (table $name? min funcref)")
			}
			min, err := strconv.ParseUint(k[0].atom, 10, 32)
			if err != nil {
				return errAt(f.line, "table size %q: %v", k[0].atom, err)
			}
			m.table = &struct{ min uint32 }{uint32(min)}
		case "elem":
			k := f.kids[1:]
			if len(k) < 1 || k[0].head() != "i32.const" || len(k[0].kids) != 2 || m.elem != nil {
				return errAt(f.line, "elem: want one (elem (i32.const n) $f ...)")
			}
			off, err := parseI32(k[0].kids[1].atom)
			if err != nil {
				return errAt(f.line, "elem offset: %v", err)
			}
			m.elem = &struct {
				offset int32
				funcs  []*node
			}{off, k[1:]}
		case "export":
			k := f.kids[1:]
			if len(k) != 2 || !k[0].str || k[1].head() != "func" || len(k[1].kids) != 2 {
				return errAt(f.line, "export: want (export \"name\" (func $f))")
			}
			m.exports = append(m.exports, export{name: k[0].atom, kind: 0, ref: k[1].kids[1]})
		default:
			return errAt(f.line, "unsupported module field %q", f.head())
		}
	}
	return nil
}

func (m *module) importField(f *node) error {
	k := f.kids[1:]
	if len(k) != 3 || !k[0].str || !k[1].str || k[2].head() != "memory" {
		return errAt(f.line, "import: only (import \"mod\" \"name\" (memory $id? min max?)) is supported")
	}
	d := k[2].kids[1:]
	if len(d) > 0 && strings.HasPrefix(d[0].atom, "$") {
		d = d[1:]
	}
	if len(d) < 1 || len(d) > 2 {
		return errAt(f.line, "memory import: want min and optional max pages")
	}
	min, err := strconv.ParseUint(d[0].atom, 10, 32)
	if err != nil {
		return errAt(f.line, "memory min %q: %v", d[0].atom, err)
	}
	mi := memImport{mod: k[0].atom, name: k[1].atom, min: uint32(min), max: -1}
	if len(d) == 2 {
		max, err := strconv.ParseUint(d[1].atom, 10, 32)
		if err != nil {
			return errAt(f.line, "memory max %q: %v", d[1].atom, err)
		}
		mi.max = int64(max)
	}
	m.mems = append(m.mems, mi)
	return nil
}

// signature reads (param ...) and (result ...) lists from the front of k
// (names allowed in params when named), returning the type, the param names
// (by index, "" for unnamed) and the rest.
func signature(k []*node, named bool) (funcType, []*node, error) {
	var ft funcType
	i := 0
	for ; i < len(k) && k[i].head() == "param"; i++ {
		p := k[i].kids[1:]
		if len(p) == 2 && strings.HasPrefix(p[0].atom, "$") {
			t, ok := valTypes[p[1].atom]
			if !ok {
				return ft, nil, errAt(k[i].line, "unknown type %q", p[1].atom)
			}
			ft.params = append(ft.params, t)
			continue
		}
		for _, a := range p {
			t, ok := valTypes[a.atom]
			if !ok {
				return ft, nil, errAt(k[i].line, "unknown type %q", a.atom)
			}
			ft.params = append(ft.params, t)
		}
	}
	for ; i < len(k) && k[i].head() == "result"; i++ {
		for _, a := range k[i].kids[1:] {
			t, ok := valTypes[a.atom]
			if !ok {
				return ft, nil, errAt(k[i].line, "unknown type %q", a.atom)
			}
			ft.results = append(ft.results, t)
		}
	}
	return ft, k[i:], nil
}

func (m *module) funcField(f *node) error {
	fn := &function{localIdx: map[string]int{}, line: f.line}
	k := f.kids[1:]
	if len(k) > 0 && !k[0].list && strings.HasPrefix(k[0].atom, "$") {
		fn.name, k = k[0].atom, k[1:]
		if _, dup := m.funcIdx[fn.name]; dup {
			return errAt(f.line, "function %s defined twice", fn.name)
		}
		m.funcIdx[fn.name] = len(m.funcs)
	}
	for len(k) > 0 && k[0].head() == "export" {
		if len(k[0].kids) != 2 || !k[0].kids[1].str {
			return errAt(k[0].line, "export: want (export \"name\")")
		}
		m.exports = append(m.exports, export{name: k[0].kids[1].atom, kind: 0, idx: len(m.funcs)})
		k = k[1:]
	}
	explicit := -1
	if len(k) > 0 && k[0].head() == "type" {
		if len(k[0].kids) != 2 {
			return errAt(k[0].line, "type use: want (type $t)")
		}
		t, err := m.typeRef(k[0].kids[1])
		if err != nil {
			return err
		}
		explicit, k = t, k[1:]
	}
	inline := len(k) > 0 && (k[0].head() == "param" || k[0].head() == "result")
	if explicit >= 0 && !inline {
		fn.params = m.types[explicit].params
		fn.results = m.types[explicit].results
	}
	// Params, with names.
	for len(k) > 0 && k[0].head() == "param" {
		p := k[0].kids[1:]
		if len(p) == 2 && strings.HasPrefix(p[0].atom, "$") {
			t, ok := valTypes[p[1].atom]
			if !ok {
				return errAt(k[0].line, "unknown type %q", p[1].atom)
			}
			fn.localIdx[p[0].atom] = len(fn.params)
			fn.params = append(fn.params, t)
		} else {
			for _, a := range p {
				t, ok := valTypes[a.atom]
				if !ok {
					return errAt(k[0].line, "unknown type %q", a.atom)
				}
				fn.params = append(fn.params, t)
			}
		}
		k = k[1:]
	}
	for len(k) > 0 && k[0].head() == "result" {
		for _, a := range k[0].kids[1:] {
			t, ok := valTypes[a.atom]
			if !ok {
				return errAt(k[0].line, "unknown type %q", a.atom)
			}
			fn.results = append(fn.results, t)
		}
		k = k[1:]
	}
	for len(k) > 0 && k[0].head() == "local" {
		p := k[0].kids[1:]
		if len(p) == 2 && strings.HasPrefix(p[0].atom, "$") {
			t, ok := valTypes[p[1].atom]
			if !ok {
				return errAt(k[0].line, "unknown type %q", p[1].atom)
			}
			if _, dup := fn.localIdx[p[0].atom]; dup {
				return errAt(k[0].line, "local %s declared twice", p[0].atom)
			}
			fn.localIdx[p[0].atom] = len(fn.params) + len(fn.locals)
			fn.locals = append(fn.locals, t)
		} else {
			for _, a := range p {
				t, ok := valTypes[a.atom]
				if !ok {
					return errAt(k[0].line, "unknown type %q", a.atom)
				}
				fn.locals = append(fn.locals, t)
			}
		}
		k = k[1:]
	}
	ft := funcType{params: fn.params, results: fn.results}
	if explicit >= 0 {
		if m.types[explicit].key() != ft.key() {
			return errAt(f.line, "function %s does not match its type use", fn.name)
		}
		fn.typ = explicit
	} else {
		fn.typ = m.internType(ft)
	}
	fn.body = k
	m.funcs = append(m.funcs, fn)
	return nil
}

func (m *module) typeRef(n *node) (int, error) {
	if strings.HasPrefix(n.atom, "$") {
		i, ok := m.typeIdx[n.atom]
		if !ok {
			return 0, errAt(n.line, "unknown type %s", n.atom)
		}
		return i, nil
	}
	i, err := strconv.ParseUint(n.atom, 10, 32)
	if err != nil || int(i) >= len(m.types) {
		return 0, errAt(n.line, "bad type index %q", n.atom)
	}
	return int(i), nil
}

func (m *module) funcRef(n *node) (int, error) {
	if strings.HasPrefix(n.atom, "$") {
		i, ok := m.funcIdx[n.atom]
		if !ok {
			return 0, errAt(n.line, "unknown function %s", n.atom)
		}
		return i, nil
	}
	i, err := strconv.ParseUint(n.atom, 10, 32)
	if err != nil || int(i) >= len(m.funcs) {
		return 0, errAt(n.line, "bad function index %q", n.atom)
	}
	return int(i), nil
}

// --- binary encoding ---

func uleb(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func sleb(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func name(b []byte, s string) []byte {
	b = uleb(b, uint64(len(s)))
	return append(b, s...)
}

func section(out []byte, id byte, body []byte) []byte {
	out = append(out, id)
	out = uleb(out, uint64(len(body)))
	return append(out, body...)
}

func (m *module) encode() ([]byte, error) {
	out := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	// Function bodies first: call_indirect and block types may intern types.
	var code []byte
	code = uleb(code, uint64(len(m.funcs)))
	for _, fn := range m.funcs {
		body, err := m.funcBody(fn)
		if err != nil {
			return nil, err
		}
		code = uleb(code, uint64(len(body)))
		code = append(code, body...)
	}
	if len(m.types) > 0 {
		var b []byte
		b = uleb(b, uint64(len(m.types)))
		for _, t := range m.types {
			b = append(b, 0x60)
			b = uleb(b, uint64(len(t.params)))
			b = append(b, t.params...)
			b = uleb(b, uint64(len(t.results)))
			b = append(b, t.results...)
		}
		out = section(out, 1, b)
	}
	if len(m.mems) > 0 {
		var b []byte
		b = uleb(b, uint64(len(m.mems)))
		for _, mi := range m.mems {
			b = name(b, mi.mod)
			b = name(b, mi.name)
			b = append(b, 0x02)
			if mi.max < 0 {
				b = append(b, 0)
				b = uleb(b, uint64(mi.min))
			} else {
				b = append(b, 1)
				b = uleb(b, uint64(mi.min))
				b = uleb(b, uint64(mi.max))
			}
		}
		out = section(out, 2, b)
	}
	if len(m.funcs) > 0 {
		var b []byte
		b = uleb(b, uint64(len(m.funcs)))
		for _, fn := range m.funcs {
			b = uleb(b, uint64(fn.typ))
		}
		out = section(out, 3, b)
	}
	if m.table != nil {
		b := []byte{1, 0x70, 0}
		b = uleb(b, uint64(m.table.min))
		out = section(out, 4, b)
	}
	if len(m.exports) > 0 {
		var b []byte
		b = uleb(b, uint64(len(m.exports)))
		seen := map[string]bool{}
		for _, e := range m.exports {
			if seen[e.name] {
				return nil, fmt.Errorf("wat: export %q defined twice", e.name)
			}
			seen[e.name] = true
			idx := e.idx
			if e.ref != nil {
				i, err := m.funcRef(e.ref)
				if err != nil {
					return nil, err
				}
				idx = i
			}
			b = name(b, e.name)
			b = append(b, e.kind)
			b = uleb(b, uint64(idx))
		}
		out = section(out, 7, b)
	}
	if m.elem != nil {
		if m.table == nil {
			return nil, errors.New("wat: elem without a table")
		}
		b := []byte{1, 0, 0x41}
		b = sleb(b, int64(m.elem.offset))
		b = append(b, 0x0b)
		b = uleb(b, uint64(len(m.elem.funcs)))
		for _, f := range m.elem.funcs {
			i, err := m.funcRef(f)
			if err != nil {
				return nil, err
			}
			b = uleb(b, uint64(i))
		}
		out = section(out, 9, b)
	}
	if len(m.funcs) > 0 {
		out = section(out, 10, code)
	}
	return out, nil
}

func (m *module) funcBody(fn *function) ([]byte, error) {
	var b []byte
	// Locals, run-length encoded by type.
	var groups [][2]int
	for _, t := range fn.locals {
		if n := len(groups); n > 0 && groups[n-1][1] == int(t) {
			groups[n-1][0]++
			continue
		}
		groups = append(groups, [2]int{1, int(t)})
	}
	b = uleb(b, uint64(len(groups)))
	for _, g := range groups {
		b = uleb(b, uint64(g[0]))
		b = append(b, byte(g[1]))
	}
	e := &emitter{m: m, fn: fn, out: b}
	if err := e.seq(fn.body); err != nil {
		return nil, err
	}
	if len(e.labels) != 0 {
		return nil, errAt(fn.line, "function %s: unclosed block", fn.name)
	}
	return append(e.out, 0x0b), nil
}

// --- instructions ---

type immKind uint8

const (
	immNone    immKind = iota
	immMem             // memarg
	immMemLane         // memarg, lane index
	immLane            // lane index
	immLocal           // local index
	immFunc            // function index
	immLabel           // label depth
	immBrTable         // labels..., default
	immCallInd         // (type $t), table 0
	immBlock           // block type; opens a label
	immI32
	immI64
	immF32
	immF64
	immV128
	immShuffle
)

type op struct {
	code  []byte
	imm   immKind
	align uint32 // natural alignment (log2 bytes) for memory ops
}

func simd(code uint32, imm immKind, align uint32) op {
	return op{code: uleb([]byte{0xfd}, uint64(code)), imm: imm, align: align}
}

func plain(code byte, imm immKind, align uint32) op {
	return op{code: []byte{code}, imm: imm, align: align}
}

// ops are the instructions Assemble knows.
var ops = map[string]op{
	"unreachable": plain(0x00, immNone, 0), "nop": plain(0x01, immNone, 0),
	"block": plain(0x02, immBlock, 0), "loop": plain(0x03, immBlock, 0), "if": plain(0x04, immBlock, 0),
	"br": plain(0x0c, immLabel, 0), "br_if": plain(0x0d, immLabel, 0), "br_table": plain(0x0e, immBrTable, 0),
	"return": plain(0x0f, immNone, 0), "call": plain(0x10, immFunc, 0), "call_indirect": plain(0x11, immCallInd, 0),
	"drop": plain(0x1a, immNone, 0), "select": plain(0x1b, immNone, 0),
	"local.get": plain(0x20, immLocal, 0), "local.set": plain(0x21, immLocal, 0), "local.tee": plain(0x22, immLocal, 0),

	"i32.load": plain(0x28, immMem, 2), "i64.load": plain(0x29, immMem, 3), "f32.load": plain(0x2a, immMem, 2), "f64.load": plain(0x2b, immMem, 3),
	"i32.store": plain(0x36, immMem, 2), "i64.store": plain(0x37, immMem, 3), "f32.store": plain(0x38, immMem, 2), "f64.store": plain(0x39, immMem, 3),

	"i32.const": plain(0x41, immI32, 0), "i64.const": plain(0x42, immI64, 0), "f32.const": plain(0x43, immF32, 0), "f64.const": plain(0x44, immF64, 0),

	"i32.eqz": plain(0x45, immNone, 0), "i32.eq": plain(0x46, immNone, 0), "i32.ne": plain(0x47, immNone, 0),
	"i32.lt_s": plain(0x48, immNone, 0), "i32.lt_u": plain(0x49, immNone, 0), "i32.gt_s": plain(0x4a, immNone, 0), "i32.gt_u": plain(0x4b, immNone, 0),
	"i32.le_s": plain(0x4c, immNone, 0), "i32.le_u": plain(0x4d, immNone, 0), "i32.ge_s": plain(0x4e, immNone, 0), "i32.ge_u": plain(0x4f, immNone, 0),
	"f32.eq": plain(0x5b, immNone, 0), "f32.ne": plain(0x5c, immNone, 0), "f32.lt": plain(0x5d, immNone, 0), "f32.gt": plain(0x5e, immNone, 0),
	"f32.le": plain(0x5f, immNone, 0), "f32.ge": plain(0x60, immNone, 0),

	"i32.add": plain(0x6a, immNone, 0), "i32.sub": plain(0x6b, immNone, 0), "i32.mul": plain(0x6c, immNone, 0),
	"i32.div_u": plain(0x6e, immNone, 0), "i32.rem_u": plain(0x70, immNone, 0),
	"i32.and": plain(0x71, immNone, 0), "i32.or": plain(0x72, immNone, 0), "i32.xor": plain(0x73, immNone, 0),
	"i32.shl": plain(0x74, immNone, 0), "i32.shr_s": plain(0x75, immNone, 0), "i32.shr_u": plain(0x76, immNone, 0),

	"f32.abs": plain(0x8b, immNone, 0), "f32.neg": plain(0x8c, immNone, 0), "f32.sqrt": plain(0x91, immNone, 0),
	"f32.add": plain(0x92, immNone, 0), "f32.sub": plain(0x93, immNone, 0), "f32.mul": plain(0x94, immNone, 0), "f32.div": plain(0x95, immNone, 0),
	"f64.add": plain(0xa0, immNone, 0), "f64.sub": plain(0xa1, immNone, 0), "f64.mul": plain(0xa2, immNone, 0),
	"f64.promote_f32": plain(0xbb, immNone, 0), "f32.reinterpret_i32": plain(0xbe, immNone, 0),

	"v128.load": simd(0x00, immMem, 4), "v128.load32_splat": simd(0x09, immMem, 2), "v128.store": simd(0x0b, immMem, 4),
	"v128.const": simd(0x0c, immV128, 0), "i8x16.shuffle": simd(0x0d, immShuffle, 0), "i8x16.swizzle": simd(0x0e, immNone, 0),
	"i32x4.splat": simd(0x11, immNone, 0), "f32x4.splat": simd(0x13, immNone, 0), "f64x2.splat": simd(0x14, immNone, 0),
	"i32x4.extract_lane": simd(0x1b, immLane, 0), "i32x4.replace_lane": simd(0x1c, immLane, 0),
	"f32x4.extract_lane": simd(0x1f, immLane, 0), "f32x4.replace_lane": simd(0x20, immLane, 0),
	"f64x2.extract_lane": simd(0x21, immLane, 0),
	"i32x4.eq":           simd(0x37, immNone, 0), "i32x4.ne": simd(0x38, immNone, 0), "i32x4.lt_s": simd(0x39, immNone, 0),
	"f32x4.eq": simd(0x41, immNone, 0), "f32x4.ne": simd(0x42, immNone, 0), "f32x4.lt": simd(0x43, immNone, 0),
	"f32x4.gt": simd(0x44, immNone, 0), "f32x4.le": simd(0x45, immNone, 0), "f32x4.ge": simd(0x46, immNone, 0),
	"v128.not": simd(0x4d, immNone, 0), "v128.and": simd(0x4e, immNone, 0), "v128.andnot": simd(0x4f, immNone, 0),
	"v128.or": simd(0x50, immNone, 0), "v128.xor": simd(0x51, immNone, 0), "v128.bitselect": simd(0x52, immNone, 0),
	"v128.any_true":    simd(0x53, immNone, 0),
	"v128.load32_lane": simd(0x56, immMemLane, 2), "v128.store32_lane": simd(0x5a, immMemLane, 2),
	"v128.load32_zero":        simd(0x5c, immMem, 2),
	"f64x2.promote_low_f32x4": simd(0x5f, immNone, 0),
	"i32x4.bitmask":           simd(0xa4, immNone, 0),
	"i32x4.shl":               simd(0xab, immNone, 0), "i32x4.shr_s": simd(0xac, immNone, 0), "i32x4.shr_u": simd(0xad, immNone, 0),
	"i32x4.add": simd(0xae, immNone, 0), "i32x4.sub": simd(0xb1, immNone, 0), "i32x4.mul": simd(0xb5, immNone, 0),
	"f32x4.abs": simd(0xe0, immNone, 0), "f32x4.neg": simd(0xe1, immNone, 0), "f32x4.sqrt": simd(0xe3, immNone, 0),
	"f32x4.add": simd(0xe4, immNone, 0), "f32x4.sub": simd(0xe5, immNone, 0), "f32x4.mul": simd(0xe6, immNone, 0),
	"f32x4.div": simd(0xe7, immNone, 0), "f32x4.min": simd(0xe8, immNone, 0), "f32x4.max": simd(0xe9, immNone, 0),
	"f32x4.pmin": simd(0xea, immNone, 0), "f32x4.pmax": simd(0xeb, immNone, 0),
	"f64x2.add": simd(0xf0, immNone, 0), "f64x2.mul": simd(0xf2, immNone, 0),
	"f32x4.convert_i32x4_s": simd(0xfa, immNone, 0),
}

type emitter struct {
	m      *module
	fn     *function
	out    []byte
	labels []string // innermost last; "" for unnamed
}

// seq emits a sequence of flat and folded instructions.
func (e *emitter) seq(ns []*node) error {
	for i := 0; i < len(ns); {
		n := ns[i]
		if n.isList() {
			if err := e.folded(n); err != nil {
				return err
			}
			i++
			continue
		}
		used, err := e.flat(ns[i:])
		if err != nil {
			return err
		}
		i += used
	}
	return nil
}

// flat emits the flat instruction at ns[0] with its immediates from the
// following atoms, returning how many nodes it used.
func (e *emitter) flat(ns []*node) (int, error) {
	n := ns[0]
	switch n.atom {
	case "end":
		if len(e.labels) == 0 {
			return 0, errAt(n.line, "end without a block")
		}
		e.labels = e.labels[:len(e.labels)-1]
		e.out = append(e.out, 0x0b)
		used := 1
		if len(ns) > 1 && !ns[1].list && strings.HasPrefix(ns[1].atom, "$") {
			used++ // end $label
		}
		return used, nil
	case "else":
		if len(e.labels) == 0 {
			return 0, errAt(n.line, "else without if")
		}
		e.out = append(e.out, 0x05)
		used := 1
		if len(ns) > 1 && !ns[1].list && strings.HasPrefix(ns[1].atom, "$") {
			used++
		}
		return used, nil
	}
	o, ok := ops[n.atom]
	if !ok {
		return 0, errAt(n.line, "unknown instruction %q", n.atom)
	}
	args := ns[1:]
	used, err := e.emit(n, o, args, true)
	return 1 + used, err
}

// emit writes o with its immediates taken from args (atoms, and for block
// types and call_indirect the lists that belong to them), returning how many
// args it took.
func (e *emitter) emit(n *node, o op, args []*node, flat bool) (int, error) {
	e.out = append(e.out, o.code...)
	atom := func(i int) (string, bool) {
		if i < len(args) && !args[i].list {
			return args[i].atom, true
		}
		return "", false
	}
	switch o.imm {
	case immNone:
		return 0, nil
	case immMem, immMemLane:
		used := 0
		offset, align := uint64(0), o.align
		for {
			a, ok := atom(used)
			if !ok {
				break
			}
			if v, ok := strings.CutPrefix(a, "offset="); ok {
				x, err := strconv.ParseUint(v, 0, 32)
				if err != nil {
					return 0, errAt(n.line, "bad offset %q", v)
				}
				offset = x
			} else if v, ok := strings.CutPrefix(a, "align="); ok {
				x, err := strconv.ParseUint(v, 0, 32)
				if err != nil || x == 0 || x&(x-1) != 0 {
					return 0, errAt(n.line, "bad align %q", v)
				}
				align = uint32(math.Log2(float64(x)))
				if align > o.align {
					return 0, errAt(n.line, "align %d exceeds the natural alignment", x)
				}
			} else {
				break
			}
			used++
		}
		e.out = uleb(e.out, uint64(align))
		e.out = uleb(e.out, offset)
		if o.imm == immMemLane {
			a, ok := atom(used)
			if !ok {
				return 0, errAt(n.line, "%s needs a lane index", n.atom)
			}
			l, err := strconv.ParseUint(a, 10, 8)
			if err != nil {
				return 0, errAt(n.line, "bad lane %q", a)
			}
			e.out = append(e.out, byte(l))
			used++
		}
		return used, nil
	case immLane:
		a, ok := atom(0)
		l, err := strconv.ParseUint(a, 10, 8)
		if !ok || err != nil {
			return 0, errAt(n.line, "%s needs a lane index", n.atom)
		}
		e.out = append(e.out, byte(l))
		return 1, nil
	case immLocal:
		a, ok := atom(0)
		if !ok {
			return 0, errAt(n.line, "%s needs a local", n.atom)
		}
		idx, err := e.local(n, a)
		if err != nil {
			return 0, err
		}
		e.out = uleb(e.out, uint64(idx))
		return 1, nil
	case immFunc:
		if len(args) == 0 || args[0].list {
			return 0, errAt(n.line, "call needs a function")
		}
		idx, err := e.m.funcRef(args[0])
		if err != nil {
			return 0, err
		}
		e.out = uleb(e.out, uint64(idx))
		return 1, nil
	case immLabel:
		a, ok := atom(0)
		if !ok {
			return 0, errAt(n.line, "%s needs a label", n.atom)
		}
		d, err := e.label(n, a)
		if err != nil {
			return 0, err
		}
		e.out = uleb(e.out, uint64(d))
		return 1, nil
	case immBrTable:
		var ds []int
		for i := 0; ; i++ {
			a, ok := atom(i)
			if !ok {
				break
			}
			d, err := e.label(n, a)
			if err != nil {
				break
			}
			ds = append(ds, d)
		}
		if len(ds) < 1 {
			return 0, errAt(n.line, "br_table needs labels")
		}
		e.out = uleb(e.out, uint64(len(ds)-1))
		for _, d := range ds {
			e.out = uleb(e.out, uint64(d))
		}
		return len(ds), nil
	case immCallInd:
		if len(args) == 0 || args[0].head() != "type" || len(args[0].kids) != 2 {
			return 0, errAt(n.line, "call_indirect needs (type $t)")
		}
		t, err := e.m.typeRef(args[0].kids[1])
		if err != nil {
			return 0, err
		}
		e.out = uleb(e.out, uint64(t))
		e.out = append(e.out, 0)
		return 1, nil
	case immBlock:
		used := 0
		label := ""
		if a, ok := atom(0); ok && strings.HasPrefix(a, "$") {
			label = a
			used++
		}
		bt := byte(0x40)
		if used < len(args) && args[used].head() == "result" {
			r := args[used].kids[1:]
			if len(r) != 1 {
				return 0, errAt(n.line, "block types with %d results are not supported", len(r))
			}
			t, ok := valTypes[r[0].atom]
			if !ok {
				return 0, errAt(n.line, "unknown type %q", r[0].atom)
			}
			bt = t
			used++
		}
		e.out = append(e.out, bt)
		e.labels = append(e.labels, label)
		return used, nil
	case immI32:
		a, ok := atom(0)
		if !ok {
			return 0, errAt(n.line, "i32.const needs a value")
		}
		v, err := parseI32(a)
		if err != nil {
			return 0, errAt(n.line, "%v", err)
		}
		e.out = sleb(e.out, int64(v))
		return 1, nil
	case immI64:
		a, ok := atom(0)
		if !ok {
			return 0, errAt(n.line, "i64.const needs a value")
		}
		v, err := parseInt(a, 64)
		if err != nil {
			return 0, errAt(n.line, "%v", err)
		}
		e.out = sleb(e.out, v)
		return 1, nil
	case immF32:
		a, ok := atom(0)
		if !ok {
			return 0, errAt(n.line, "f32.const needs a value")
		}
		bits, err := parseF32(a)
		if err != nil {
			return 0, errAt(n.line, "%v", err)
		}
		e.out = binary.LittleEndian.AppendUint32(e.out, bits)
		return 1, nil
	case immF64:
		a, ok := atom(0)
		if !ok {
			return 0, errAt(n.line, "f64.const needs a value")
		}
		bits, err := parseF64(a)
		if err != nil {
			return 0, errAt(n.line, "%v", err)
		}
		e.out = binary.LittleEndian.AppendUint64(e.out, bits)
		return 1, nil
	case immV128:
		shape, ok := atom(0)
		lanes := map[string]int{"i8x16": 16, "i16x8": 8, "i32x4": 4, "i64x2": 2, "f32x4": 4, "f64x2": 2}[shape]
		if !ok || lanes == 0 {
			return 0, errAt(n.line, "v128.const needs a shape (i32x4, f32x4, ...)")
		}
		for i := 0; i < lanes; i++ {
			a, ok := atom(1 + i)
			if !ok {
				return 0, errAt(n.line, "v128.const %s needs %d values", shape, lanes)
			}
			var err error
			switch shape {
			case "i8x16":
				var v int64
				v, err = parseInt(a, 8)
				e.out = append(e.out, byte(v))
			case "i16x8":
				var v int64
				v, err = parseInt(a, 16)
				e.out = binary.LittleEndian.AppendUint16(e.out, uint16(v))
			case "i32x4":
				var v int64
				v, err = parseInt(a, 32)
				e.out = binary.LittleEndian.AppendUint32(e.out, uint32(v))
			case "i64x2":
				var v int64
				v, err = parseInt(a, 64)
				e.out = binary.LittleEndian.AppendUint64(e.out, uint64(v))
			case "f32x4":
				var v uint32
				v, err = parseF32(a)
				e.out = binary.LittleEndian.AppendUint32(e.out, v)
			case "f64x2":
				var v uint64
				v, err = parseF64(a)
				e.out = binary.LittleEndian.AppendUint64(e.out, v)
			}
			if err != nil {
				return 0, errAt(n.line, "%v", err)
			}
		}
		return 1 + lanes, nil
	case immShuffle:
		for i := 0; i < 16; i++ {
			a, ok := atom(i)
			l, err := strconv.ParseUint(a, 10, 8)
			if !ok || err != nil || l >= 32 {
				return 0, errAt(n.line, "i8x16.shuffle needs 16 lane indices below 32")
			}
			e.out = append(e.out, byte(l))
		}
		return 16, nil
	}
	return 0, errAt(n.line, "internal: immediate kind %d", o.imm)
}

// folded emits (op imm... operands...) and the folded block forms.
func (e *emitter) folded(n *node) error {
	h := n.head()
	k := n.kids[1:]
	switch h {
	case "block", "loop":
		o := ops[h]
		used, err := e.emit(n, o, k, false)
		if err != nil {
			return err
		}
		if err := e.seq(k[used:]); err != nil {
			return err
		}
		e.labels = e.labels[:len(e.labels)-1]
		e.out = append(e.out, 0x0b)
		return nil
	case "if":
		// (if $l? (result t)? cond... (then ...) (else ...)?)
		i := 0
		if i < len(k) && !k[i].list && strings.HasPrefix(k[i].atom, "$") {
			i++
		}
		if i < len(k) && k[i].head() == "result" {
			i++
		}
		head := k[:i]
		rest := k[i:]
		var cond []*node
		var then, els *node
		for _, c := range rest {
			switch c.head() {
			case "then":
				then = c
			case "else":
				els = c
			default:
				if then != nil {
					return errAt(c.line, "if: operands must come before (then ...)")
				}
				cond = append(cond, c)
			}
		}
		if then == nil {
			return errAt(n.line, "if: missing (then ...)")
		}
		if err := e.seq(cond); err != nil {
			return err
		}
		if _, err := e.emit(n, ops["if"], head, false); err != nil {
			return err
		}
		if err := e.seq(then.kids[1:]); err != nil {
			return err
		}
		if els != nil {
			e.out = append(e.out, 0x05)
			if err := e.seq(els.kids[1:]); err != nil {
				return err
			}
		}
		e.labels = e.labels[:len(e.labels)-1]
		e.out = append(e.out, 0x0b)
		return nil
	}
	o, ok := ops[h]
	if !ok {
		return errAt(n.line, "unknown instruction %q", h)
	}
	// Immediates are the leading atoms (and call_indirect's type use);
	// operands are the lists after them.
	nimm := 0
	for nimm < len(k) && (!k[nimm].list || (o.imm == immCallInd && nimm == 0)) {
		nimm++
	}
	if err := e.seq(k[nimm:]); err != nil {
		return err
	}
	used, err := e.emit(n, o, k[:nimm], false)
	if err != nil {
		return err
	}
	if used != nimm {
		return errAt(n.line, "%s: %d immediates, expected %d", h, nimm, used)
	}
	return nil
}

func (e *emitter) local(n *node, a string) (int, error) {
	if strings.HasPrefix(a, "$") {
		i, ok := e.fn.localIdx[a]
		if !ok {
			return 0, errAt(n.line, "unknown local %s", a)
		}
		return i, nil
	}
	i, err := strconv.ParseUint(a, 10, 32)
	if err != nil || int(i) >= len(e.fn.params)+len(e.fn.locals) {
		return 0, errAt(n.line, "bad local %q", a)
	}
	return int(i), nil
}

func (e *emitter) label(n *node, a string) (int, error) {
	if strings.HasPrefix(a, "$") {
		for d := 0; d < len(e.labels); d++ {
			if e.labels[len(e.labels)-1-d] == a {
				return d, nil
			}
		}
		return 0, errAt(n.line, "unknown label %s", a)
	}
	d, err := strconv.ParseUint(a, 10, 32)
	if err != nil || int(d) > len(e.labels) {
		return 0, errAt(n.line, "bad label %q", a)
	}
	return int(d), nil
}

// --- numbers ---

func parseInt(s string, bits int) (int64, error) {
	s = strings.ReplaceAll(s, "_", "")
	neg := false
	if strings.HasPrefix(s, "-") {
		neg, s = true, s[1:]
	} else {
		s = strings.TrimPrefix(s, "+")
	}
	u, err := strconv.ParseUint(s, 0, bits)
	if err != nil {
		return 0, fmt.Errorf("bad %d-bit integer %q", bits, s)
	}
	if neg {
		if bits < 64 && u > 1<<(bits-1) || bits == 64 && u > 1<<63 {
			return 0, fmt.Errorf("%d-bit integer -%s out of range", bits, s)
		}
		return -int64(u), nil
	}
	return int64(u), nil
}

func parseI32(s string) (int32, error) {
	v, err := parseInt(s, 32)
	return int32(uint32(v)), err
}

func parseF32(s string) (uint32, error) {
	switch strings.TrimPrefix(s, "+") {
	case "inf":
		return math.Float32bits(float32(math.Inf(1))), nil
	case "-inf":
		return math.Float32bits(float32(math.Inf(-1))), nil
	case "nan":
		return 0x7fc00000, nil
	case "-nan":
		return 0xffc00000, nil
	}
	f, err := strconv.ParseFloat(strings.ReplaceAll(s, "_", ""), 32)
	if err != nil {
		return 0, fmt.Errorf("bad f32 %q", s)
	}
	return math.Float32bits(float32(f)), nil
}

func parseF64(s string) (uint64, error) {
	switch strings.TrimPrefix(s, "+") {
	case "inf":
		return math.Float64bits(math.Inf(1)), nil
	case "-inf":
		return math.Float64bits(math.Inf(-1)), nil
	case "nan":
		return 0x7ff8000000000000, nil
	case "-nan":
		return 0xfff8000000000000, nil
	}
	f, err := strconv.ParseFloat(strings.ReplaceAll(s, "_", ""), 64)
	if err != nil {
		return 0, fmt.Errorf("bad f64 %q", s)
	}
	return math.Float64bits(f), nil
}
