//go:build !js && !wasip1

package main

import "github.com/webkv/webkv/relay/relaycmd"

func init() {
	register("version", "print the build: module version, VCS revision, Go version, platform", relaycmd.RunVersion)
}
