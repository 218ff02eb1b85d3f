//go:build !js && !wasip1

package relay

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// Issue 11, problem 10: /status had no documented schema. The package
// doc lists every field of Status and JobStatus by its JSON name; this
// keeps the list and the types in step.
func TestStatusSchemaDocumented(t *testing.T) {
	b, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "// # /status")
	if i < 0 {
		t.Fatal("doc.go has no /status section")
	}
	section := doc[i:]
	section = section[:strings.Index(section, "TestStatusSchemaDocumented")]
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^//\t\s*([a-z_]+(?:, [a-z_]+)?)\s`).FindAllStringSubmatch(section, -1) {
		for _, n := range strings.Split(m[1], ", ") {
			documented[n] = true
		}
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[Status](), reflect.TypeFor[JobStatus](), reflect.TypeFor[QuarantinedJob]()} {
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if typ == reflect.TypeFor[QuarantinedJob]() {
				if !strings.Contains(section, "{job, reason}") {
					t.Errorf("quarantined entries undocumented")
				}
				continue
			}
			if !documented[name] {
				t.Errorf("%s.%s (%q) is not in the /status schema of the package doc", typ.Name(), f.Name, name)
			}
		}
	}
}
