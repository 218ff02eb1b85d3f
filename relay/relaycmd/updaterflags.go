//go:build !js && !wasip1

package relaycmd

import (
	"flag"

	"github.com/webkv/webkv/relay"
	"github.com/webkv/webkv/wasm/sandbox"
)

// updaterFlags registers the flags of custom updater modules (relay
// UpdaterConfig) on fs; the returned function reads them after Parse.
func updaterFlags(fs *flag.FlagSet) func() relay.UpdaterConfig {
	var allow listFlag
	refuse := fs.Bool("updater-refuse", false, "refuse custom updater modules (SetUpdaterModule): jobs run built-in optimizers only")
	fs.Var(&allow, "updater-allow", "sha256:<hex> of a custom updater module to run (repeatable or comma-separated); with any, no other module runs")
	maxBytes := fs.Int("updater-max-bytes", sandbox.DefaultMaxModuleBytes, "largest custom updater module in bytes")
	pages := fs.Uint("updater-memory-pages", sandbox.DefaultMemoryPages, "memory cap of each job's updater instance, in 64 KiB pages")
	budget := fs.Duration("updater-budget", sandbox.DefaultCallBudget, "time budget of each call into an updater module; a call past it fails the job's update and unloads the module")
	cache := fs.String("updater-cache", "", "directory for compiled updater modules, kept across restarts (empty: in memory)")
	return func() relay.UpdaterConfig {
		return relay.UpdaterConfig{Refuse: *refuse, Allow: allow, MaxModuleBytes: *maxBytes,
			MemoryPages: uint32(min(*pages, 65537)), CallBudget: *budget, CacheDir: *cache}
	}
}
