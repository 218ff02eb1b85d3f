// Package demo is `webkv demo`: a relay with the web app of package www
// mounted, and N native workers (package worker) training the MNIST MLP
// together in one dist_sync job, their progress drawn as bars, the final
// test accuracy printed. Browser tabs that open the printed URL join the
// same job. The command (native/cmd/webkv) opens the workers' WebGPU
// engines; Run takes them in Config.Engines.
//
// The package needs the relay server, so it builds on native targets only
// (not GOOS=js or wasip1).
package demo
