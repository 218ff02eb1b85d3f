//go:build !js

package relay

import (
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"slices"
	"strings"
	"testing"
)

// TestDialOptionsTwins: DialOptions is declared twice, natively
// (options_notjs.go) and for the browser (options_js.go, without the
// native-only fields, so that the browser runtime links neither net/http nor
// crypto/tls). Both must list the same fields, types and docs.
func TestDialOptionsTwins(t *testing.T) {
	native := dialOptionFields(t, "options_notjs.go")
	browser := dialOptionFields(t, "options_js.go")
	nativeOnly := []string{"Header", "TLSConfig"}
	var want []string
	for _, f := range native {
		if !slices.Contains(nativeOnly, strings.Fields(f)[0]) {
			want = append(want, f)
		}
	}
	if !slices.Equal(want, browser) {
		t.Errorf("DialOptions differ between options_notjs.go and options_js.go (beyond %v):\nnative:  %q\nbrowser: %q", nativeOnly, want, browser)
	}
	if len(browser) < 10 {
		t.Errorf("only %d fields found: %q", len(browser), browser)
	}
}

// dialOptionFields lists DialOptions' fields in file as "Name Type // doc".
func dialOptionFields(t *testing.T, file string) []string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || ts.Name.Name != "DialOptions" {
			return true
		}
		for _, fl := range ts.Type.(*ast.StructType).Fields.List {
			typ := types.ExprString(fl.Type)
			for _, name := range fl.Names {
				out = append(out, name.Name+" "+typ+" // "+strings.Join(strings.Fields(fl.Doc.Text()), " "))
			}
		}
		return false
	})
	return out
}
