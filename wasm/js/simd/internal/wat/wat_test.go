package wat

import (
	"bytes"
	"strings"
	"testing"
)

func TestAssembleSmall(t *testing.T) {
	src := `(module
  (import "go" "mem" (memory 1))
  ;; a comment
  (func $add (export "add") (param $a i32) (param $b i32) (result i32)
    (i32.add (local.get $a) (local.get $b)))
  (func (export "flat") (param f32) (result f32) (local v128)
    local.get 0
    f32x4.splat
    local.tee 1
    f32x4.extract_lane 2
    drop
    (; block comment ;)
    block $out (result f32)
      f32.const -1.5
      br $out
    end))`
	got, err := Assemble([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	// wabt's wat2wasm output for the same text.
	want := []byte{
		0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x0c, 0x02, 0x60, 0x02, 0x7f, 0x7f, 0x01,
		0x7f, 0x60, 0x01, 0x7d, 0x01, 0x7d, 0x02, 0x0b, 0x01, 0x02, 0x67, 0x6f, 0x03, 0x6d, 0x65, 0x6d,
		0x02, 0x00, 0x01, 0x03, 0x03, 0x02, 0x00, 0x01, 0x07, 0x0e, 0x02, 0x03, 0x61, 0x64, 0x64, 0x00,
		0x00, 0x04, 0x66, 0x6c, 0x61, 0x74, 0x00, 0x01, 0x0a, 0x22, 0x02, 0x07, 0x00, 0x20, 0x00, 0x20,
		0x01, 0x6a, 0x0b, 0x18, 0x01, 0x01, 0x7b, 0x20, 0x00, 0xfd, 0x13, 0x22, 0x01, 0xfd, 0x1f, 0x02,
		0x1a, 0x02, 0x7d, 0x43, 0x00, 0x00, 0xc0, 0xbf, 0x0c, 0x00, 0x0b, 0x0b,
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got  % x\nwant % x", got, want)
	}
}

func TestAssembleErrors(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{`(module (func (i32.bogus)))`, `line 1: unknown instruction "i32.bogus"`},
		{"(module\n (func (local.get $x)))", `line 2: unknown local $x`},
		{`(module (func (br $nowhere)))`, `unknown label $nowhere`},
		{`(module (func (call $f)))`, `unknown function $f`},
		{`(module (func block))`, `unclosed block`},
		{`(module (func (i32.const)`, `unbalanced (`},
		{`(module (memory 1))`, `unsupported module field "memory"`},
		{`(module (func (i32.const 4294967296)))`, `bad 32-bit integer`},
		{`(module (func (v128.load align=32 (i32.const 0))))`, `exceeds the natural alignment`},
	} {
		_, err := Assemble([]byte(c.src))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.src, err, c.want)
		}
	}
}
