//go:build !js && !wasip1

// Command webkv is webkv's binary for a native machine. Each subcommand
// lives in its own file and registers itself in commands; main only
// dispatches.
//
//	webkv relay  -listen 127.0.0.1:7070 -data ./relay-data -token job=secret
//	webkv worker -url ws://127.0.0.1:7070 -job mnist -token secret
//	webkv demo   [-workers 2] [-steps 200] [-cpu]
//	webkv jobs   -admin 127.0.0.1:7070 -admin-token T list|reset JOB|delete JOB
//	webkv version
//	webkv help
//
// relay is the relay server of package relaycmd, the same as the pure-Go
// webkv-relay binary (relay/cmd/webkv-relay); worker and demo train the
// demo's MNIST model (www/...) on WebGPU through wgpu-native, which needs
// cgo. Built with CGO_ENABLED=0 the command still works: its workers then
// compute on the CPU reference and say so.
package main

import (
	"fmt"
	"os"
	"sort"
)

// command is one subcommand: run gets the arguments after its name and
// returns the process exit code.
type command struct {
	summary string
	run     func(args []string) int
}

// commands is filled by the init functions of the subcommand files
// (relay.go, worker.go, demo.go).
var commands = map[string]command{}

func register(name, summary string, run func(args []string) int) {
	if _, dup := commands[name]; dup {
		panic("webkv: subcommand registered twice: " + name)
	}
	commands[name] = command{summary, run}
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: webkv <command> [flags]\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(os.Stderr, "\nRun 'webkv <command> -h' for a command's flags.\n")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "help" || os.Args[1] == "-h" || os.Args[1] == "--help" {
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	c, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "webkv: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	os.Exit(c.run(os.Args[2:]))
}
