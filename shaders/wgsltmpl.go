package shaders

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// The kernels' WGSL sources use a small subset of text/template's syntax,
// expanded here by a few lines of code instead of by text/template itself:
// text/template looks methods up by name at run time (reflect's
// MethodByName), which makes Go's linker keep every exported method of
// every type in a program, and that alone was a third of the browser
// runtime's compressed size (see RATIONALE.md, "Why is the browser runtime
// small?"). TestTemplateSubset checks that every kernel variant expands to
// exactly what text/template makes of the same files.
//
// The subset: {{.Name}}; {{if .Name}}, {{if eq .Name 3}}, {{else}},
// {{end}}; {{range .Name}} over []srcBinding (dot is then the element,
// with fields .I and .B); {{define "name"}} and {{template "name" .}};
// {{/* comments */}}; "{{- " and " -}}" trim the white space before and
// after an action. Any
// other action is a parse error naming the file and the action.

// tmplNode is one piece of a parsed template.
type tmplNode struct {
	kind  byte   // 't' text, 'f' field, 'i' if, 'r' range, 'c' call of a defined template
	text  string // text; field name (if/range/field); template name (call)
	eq    *int   // if eq .text N
	body  []tmplNode
	else_ []tmplNode
}

// tmplSet is the parsed WGSL files: each file's top-level nodes, and the
// named templates they define.
type tmplSet struct {
	files, defs map[string][]tmplNode
}

func parseTemplates(fsys fs.FS, pattern string) (*tmplSet, error) {
	names, err := fs.Glob(fsys, pattern)
	if err != nil {
		return nil, err
	}
	set := &tmplSet{files: map[string][]tmplNode{}, defs: map[string][]tmplNode{}}
	for _, name := range names {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		if err := set.parse(name, string(b)); err != nil {
			return nil, err
		}
	}
	return set, nil
}

// frame is an open block while parsing: where its nodes go.
type frame struct {
	node   *tmplNode // the if or range (nil for the file, or for a define)
	define string    // the name, for a define
	inElse bool
	nodes  []tmplNode
}

func (s *tmplSet) parse(file, src string) error {
	stack := []*frame{{}}
	add := func(n tmplNode) { f := stack[len(stack)-1]; f.nodes = append(f.nodes, n) }
	trimNext := false
	for len(src) > 0 {
		i := strings.Index(src, "{{")
		if i < 0 {
			i = len(src)
		}
		text := src[:i]
		if trimNext {
			text = strings.TrimLeft(text, " \t\r\n")
		}
		src = src[i:]
		if len(src) == 0 {
			if text != "" {
				add(tmplNode{kind: 't', text: text})
			}
			break
		}
		j := strings.Index(src, "}}")
		if j < 0 {
			return fmt.Errorf("shaders: %s: unclosed action", file)
		}
		act := src[2:j]
		src = src[j+2:]
		if strings.HasPrefix(act, "- ") {
			text = strings.TrimRight(text, " \t\r\n")
			act = act[2:]
		}
		trimNext = strings.HasSuffix(act, " -")
		if trimNext {
			act = act[:len(act)-2]
		}
		if text != "" {
			add(tmplNode{kind: 't', text: text})
		}
		bad := func() error { return fmt.Errorf("shaders: %s: unsupported template action {{%s}}", file, act) }
		w := strings.Fields(act)
		switch {
		case strings.HasPrefix(act, "/*") && strings.HasSuffix(act, "*/"):
			// a comment
		case len(w) == 1 && isField(w[0]):
			add(tmplNode{kind: 'f', text: w[0][1:]})
		case len(w) == 2 && w[0] == "if" && isField(w[1]):
			stack = append(stack, &frame{node: &tmplNode{kind: 'i', text: w[1][1:]}})
		case len(w) == 4 && w[0] == "if" && w[1] == "eq" && isField(w[2]):
			n, err := strconv.Atoi(w[3])
			if err != nil {
				return bad()
			}
			stack = append(stack, &frame{node: &tmplNode{kind: 'i', text: w[2][1:], eq: &n}})
		case len(w) == 2 && w[0] == "range" && isField(w[1]):
			stack = append(stack, &frame{node: &tmplNode{kind: 'r', text: w[1][1:]}})
		case len(w) == 2 && w[0] == "define":
			name, err := strconv.Unquote(w[1])
			if err != nil || len(stack) != 1 {
				return bad()
			}
			stack = append(stack, &frame{define: name})
		case len(w) == 3 && w[0] == "template" && w[2] == ".":
			name, err := strconv.Unquote(w[1])
			if err != nil {
				return bad()
			}
			add(tmplNode{kind: 'c', text: name})
		case len(w) == 1 && w[0] == "else":
			f := stack[len(stack)-1]
			if f.node == nil || f.node.kind != 'i' || f.inElse {
				return bad()
			}
			f.node.body, f.nodes, f.inElse = f.nodes, nil, true
		case len(w) == 1 && w[0] == "end":
			if len(stack) == 1 {
				return bad()
			}
			f := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if f.node == nil {
				s.defs[f.define] = f.nodes
				continue
			}
			if f.inElse {
				f.node.else_ = f.nodes
			} else {
				f.node.body = f.nodes
			}
			add(*f.node)
		default:
			return bad()
		}
	}
	if len(stack) != 1 {
		return fmt.Errorf("shaders: %s: unclosed block", file)
	}
	s.files[file] = stack[0].nodes
	return nil
}

func isField(w string) bool {
	if len(w) < 2 || w[0] != '.' {
		return false
	}
	for _, c := range w[1:] {
		if !(c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

var errTmplMissing = errors.New("map has no entry for key")

// execute writes file's expansion for data to sb.
func (s *tmplSet) execute(sb *strings.Builder, file string, data map[string]any) error {
	nodes, ok := s.files[file]
	if !ok {
		return fmt.Errorf("shaders: no template %q", file)
	}
	return s.run(sb, nodes, data, 0)
}

func (s *tmplSet) run(sb *strings.Builder, nodes []tmplNode, dot any, depth int) error {
	if depth > 16 {
		return errors.New("shaders: templates nest too deeply")
	}
	for i := range nodes {
		n := &nodes[i]
		switch n.kind {
		case 't':
			sb.WriteString(n.text)
			continue
		case 'c':
			body, ok := s.defs[n.text]
			if !ok {
				return fmt.Errorf("shaders: no template %q", n.text)
			}
			if err := s.run(sb, body, dot, depth+1); err != nil {
				return err
			}
			continue
		}
		v, err := field(dot, n.text)
		if err != nil {
			return err
		}
		switch n.kind {
		case 'f':
			switch v := v.(type) {
			case string:
				sb.WriteString(v)
			case int:
				sb.WriteString(strconv.Itoa(v))
			case bool:
				sb.WriteString(strconv.FormatBool(v))
			default:
				return fmt.Errorf("shaders: field %s: cannot print %T", n.text, v)
			}
		case 'i':
			var yes bool
			if n.eq != nil {
				iv, ok := v.(int)
				if !ok {
					return fmt.Errorf("shaders: eq .%s: %T is not an int", n.text, v)
				}
				yes = iv == *n.eq
			} else if yes, err = truth(n.text, v); err != nil {
				return err
			}
			branch := n.else_
			if yes {
				branch = n.body
			}
			if err := s.run(sb, branch, dot, depth+1); err != nil {
				return err
			}
		case 'r':
			list, ok := v.([]srcBinding)
			if !ok && v != nil {
				return fmt.Errorf("shaders: range .%s: %T is not a binding list", n.text, v)
			}
			for _, e := range list {
				if err := s.run(sb, n.body, e, depth+1); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func field(dot any, name string) (any, error) {
	switch d := dot.(type) {
	case map[string]any:
		v, ok := d[name]
		if !ok {
			return nil, fmt.Errorf("shaders: .%s: %w", name, errTmplMissing)
		}
		return v, nil
	case srcBinding:
		switch name {
		case "I":
			return d.I, nil
		case "B":
			return d.B, nil
		}
	}
	return nil, fmt.Errorf("shaders: .%s: no such field in %T", name, dot)
}

// truth is text/template's truth of the values kernels use.
func truth(name string, v any) (bool, error) {
	switch v := v.(type) {
	case nil:
		return false, nil
	case bool:
		return v, nil
	case int:
		return v != 0, nil
	case string:
		return v != "", nil
	case []srcBinding:
		return len(v) > 0, nil
	}
	return false, fmt.Errorf("shaders: if .%s: %T has no truth value here", name, v)
}
