//go:build !js && !wasip1

package main

import "github.com/webkv/webkv/relay/relaycmd"

func init() {
	register("jobs", relaycmd.JobsSummary, relaycmd.RunJobs)
}
