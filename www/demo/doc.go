// Package demo is `webkv demo`: a relay with the web app of package www
// mounted, and N native workers (package worker) training the MNIST MLP
// together in one dist_sync job, their progress drawn as bars redrawn in
// place on a terminal (github.com/vbauerster/mpb/v8) or as one line per
// event elsewhere, the final test accuracy printed. The page at the watch
// URL (?watch) shows the job without joining it; tabs that open the join
// URL train with it. The command (native/cmd/webkv) opens the workers'
// WebGPU engines; Run takes them in Config.Engines.
//
// The package needs the relay server, so it builds on native targets only
// (not GOOS=js or wasip1).
package demo
