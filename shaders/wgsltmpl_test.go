package shaders

import (
	"strings"
	"testing"
	"testing/fstest"
	"text/template"
)

// TestTemplateSubset expands every kernel variant with wgsltmpl.go and with
// text/template (whose syntax the WGSL files use) and wants the same bytes.
func TestTemplateSubset(t *testing.T) {
	ref, err := template.New("").Option("missingkey=error").ParseFS(wgslFiles, "*.wgsl")
	if err != nil {
		t.Fatal(err)
	}
	ks := allKernels(t)
	for _, k := range ks {
		for _, loop := range []bool{false, true} {
			got, err := k.source(loop)
			if err != nil {
				t.Fatalf("%s: %v", k.key(), err)
			}
			data := map[string]any{"V": "f32", "Vec4": k.vec4, "Loop": loop}
			if k.vec4 {
				data["V"] = "vec4<f32>"
			}
			for n, v := range k.data {
				data[n] = v
			}
			var sb strings.Builder
			if err := ref.ExecuteTemplate(&sb, "common.wgsl", data); err != nil {
				t.Fatal(err)
			}
			sb.WriteString("\n")
			if err := ref.ExecuteTemplate(&sb, k.file, data); err != nil {
				t.Fatal(err)
			}
			if got != sb.String() {
				t.Fatalf("%s loop=%v: expansion differs from text/template's:\n--- got\n%s\n--- text/template\n%s", k.key(), loop, got, sb.String())
			}
		}
	}
	t.Logf("%d kernel variants expand as text/template expands them", len(ks))
}

// TestTemplateErrors: actions outside the subset, unclosed blocks and
// missing data are errors that name the file or the field.
func TestTemplateErrors(t *testing.T) {
	for src, want := range map[string]string{
		"{{with .X}}{{end}}":        "unsupported template action {{with .X}}",
		"{{if .X}}":                 "unclosed block",
		"{{.X.Y}}":                  "unsupported template action",
		"{{if .X}}{{else}}{{else}}": "unsupported template action {{else}}",
		"{{end}}":                   "unsupported template action {{end}}",
		"a {{":                      "unclosed action",
	} {
		_, err := parseTemplates(fstest.MapFS{"k.wgsl": {Data: []byte(src)}}, "*.wgsl")
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "k.wgsl") {
			t.Errorf("%q: got %v, want an error with %q and the file name", src, err, want)
		}
	}
	set, err := parseTemplates(fstest.MapFS{"k.wgsl": {Data: []byte("x {{.Missing}} {{template \"nope\" .}}")}}, "*.wgsl")
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	if err := set.execute(&sb, "k.wgsl", map[string]any{}); err == nil || !strings.Contains(err.Error(), ".Missing") {
		t.Errorf("missing field: got %v", err)
	}
	if err := set.execute(&sb, "k.wgsl", map[string]any{"Missing": 1}); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("missing template: got %v", err)
	}
}
