//go:build !js && !wasip1

package relaycmd

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Version describes this build from runtime/debug.ReadBuildInfo: the main
// module's version (a tag with `go install ...@v1.2.3`, "(devel)" in a
// checkout), the VCS revision and whether the tree was modified (when the
// build recorded them), the Go version and the platform; `webkv version`
// and `webkv-relay version` print it, and the relay's startup line
// carries it.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return fmt.Sprintf("webkv (no build info) %s %s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	}
	return versionOf(bi)
}

func versionOf(bi *debug.BuildInfo) string {
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var parts []string
	var rev, at, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value
		case "CGO_ENABLED":
			parts = append(parts, "cgo="+s.Value)
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if modified == "true" {
			rev += "+modified"
		}
		if at != "" {
			rev += " " + at
		}
		parts = append([]string{"rev " + rev}, parts...)
	}
	out := fmt.Sprintf("%s %s %s %s/%s", bi.Main.Path, v, bi.GoVersion, runtime.GOOS, runtime.GOARCH)
	if len(parts) > 0 {
		out += " (" + strings.Join(parts, ", ") + ")"
	}
	return out
}

// RunVersion prints Version; it takes no flags.
func RunVersion(args []string) int {
	if len(args) > 0 {
		fmt.Println("usage: version (no arguments)")
		return 2
	}
	fmt.Println(Version())
	return 0
}
