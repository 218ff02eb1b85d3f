package scripttest

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// recorder is the testing.TB datadriven reports to in these tests: it
// records failures instead of failing the test that runs it.
type recorder struct {
	testing.TB // not called: any method used and not below panics
	failed     bool
	msgs       []string
}

func (r *recorder) Helper()                         {}
func (r *recorder) Failed() bool                    { return r.failed }
func (r *recorder) Logf(format string, args ...any) {}
func (r *recorder) Errorf(format string, args ...any) {
	r.failed = true
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }
func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	r.FailNow()
}
func (r *recorder) FailNow() {
	r.failed = true
	runtime.Goexit()
}

// run runs script with echo (each line prints its command and arguments
// as parsed) and returns what failed.
func run(t *testing.T, script string) *recorder {
	r := &recorder{}
	var lines []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		datadriven.RunTestFromStringAny(r, script, func(t testing.TB, d *datadriven.TestData) string {
			return directive(t, d, func(l *Line) string {
				lines = append(lines, l.Pos)
				if l.Cmd == "quiet" {
					return ""
				}
				return fmt.Sprintf("%s %q n=%d vals=%s\n", l.Cmd, l.Word(0), l.Num("n"), FormatFloat32s(l.Float32s("vals")))
			})
		})
	}()
	<-done
	t.Logf("lines run: %v", lines)
	return r
}

const script = `# A comment.
echo a n=1 vals=1,2.5
# A comment among commands.
quiet
echo b n=-1
----
echo "a" n=1 vals=1,2.5
echo "b" n=18446744073709551615 vals=

quiet
----
`

func TestRunnerPasses(t *testing.T) {
	if r := run(t, script); r.failed {
		t.Fatalf("a script whose outputs match failed: %v", r.msgs)
	}
}

// TestRunnerFails: a runner that cannot fail is no test. Each of these
// edits of the script must fail it.
func TestRunnerFails(t *testing.T) {
	for _, c := range []struct{ name, from, to, want string }{
		{"changed output line", `vals=1,2.5` + "\n" + `echo "b"`, `vals=1,2.5` + "\n" + `echo "c"`, "expected"},
		{"missing output line", `echo "b" n=18446744073709551615 vals=` + "\n", "", "expected"},
		{"output where none is printed", "quiet\n----\n", "quiet\n----\nx\n", "expected"},
		{"bad number", "echo b n=-1", "echo b n=x", `n="x": not a number`},
		{"bad float", "vals=1,2.5\n", "vals=1,y\n", `"y" is not a float32`},
		{"bad line", "echo b n=-1", "echo b n=(1", "not a command line"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := strings.Replace(script, c.from, c.to, 1)
			if s == script {
				t.Fatalf("edit %q not found in the script", c.from)
			}
			r := run(t, s)
			if !r.failed || !strings.Contains(strings.Join(r.msgs, "\n"), c.want) {
				t.Fatalf("failed %v with %q, want a failure with %q", r.failed, r.msgs, c.want)
			}
		})
	}
}
