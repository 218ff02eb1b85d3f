// Package relaycmd is the relay's command line: its flags and run loop,
// shared by the pure-Go server binary relay/cmd/webkv-relay and the relay
// subcommand of native/cmd/webkv (`webkv relay`), so the two cannot drift.
// It is not a library API: use relay.NewServer from Go.
//
// It needs the relay server, so it builds on native targets only (not
// GOOS=js or wasip1).
package relaycmd
