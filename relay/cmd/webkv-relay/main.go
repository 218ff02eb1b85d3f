//go:build !js && !wasip1

// Command webkv-relay is webkv's relay server on its own: the parameter
// server and scheduler of dist_* stores, in pure Go. It builds with
// CGO_ENABLED=0 (no WebGPU, no wgpu-native), for a small static binary in
// a container:
//
//	CGO_ENABLED=0 go build ./relay/cmd/webkv-relay
//	webkv-relay -listen 127.0.0.1:7070 -data ./relay-data -token job=secret
//
// Its flags are those of `webkv relay` (package relaycmd); run with -h for
// the list. `webkv-relay version` prints the build; `webkv-relay jobs
// list|reset JOB|delete JOB` manages a running relay's jobs.
package main

import (
	"os"

	"github.com/webkv/webkv/relay/relaycmd"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "version" || os.Args[1] == "-version" || os.Args[1] == "--version") {
		os.Exit(relaycmd.RunVersion(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "jobs" {
		os.Exit(relaycmd.RunJobs(os.Args[2:]))
	}
	os.Exit(relaycmd.Run(os.Args[1:]))
}
