//go:build js

// Command js is webkv's browser runtime: kvcore built for GOOS=js, with the
// WebGPU backend of package shaders on the page's navigator.gpu, exposed to
// JavaScript through webkv.js (an ES module that hides wasm_exec.js).
//
// Every function this program hands to JavaScript returns a Promise at once
// and does its work in a goroutine: the WebGPU binding blocks its goroutine on
// mapAsync and onSubmittedWorkDone, and a js.FuncOf callback that blocks would
// stall the page's event loop (syscall/js: "blocking calls ... deadlock").
// Arguments are converted before the call returns, so the page may reuse its
// typed arrays as soon as a call was made.
//
// The loader protocol: webkv.js defines globalThis.__webkvInit(api) and sets
// globalThis.wasm to the WebAssembly.instantiate result (the WebGPU binding
// reads wasm memory through it), then runs this program, which calls
// __webkvInit with its API object and parks.
package main

import (
	"syscall/js"
)

func main() {
	api := js.Global().Get("Object").New()
	api.Set("create", js.FuncOf(jsCreate))
	api.Set("gpu", js.FuncOf(jsGPU))
	api.Set("info", js.FuncOf(jsInfo))
	api.Set("setEmitter", js.FuncOf(func(this js.Value, args []js.Value) any {
		if len(args) == 1 && args[0].Type() == js.TypeFunction {
			emitter = args[0]
		}
		return nil
	}))
	for name, fn := range storeMethods {
		api.Set(name, js.FuncOf(storeCall(name, fn)))
	}
	init := js.Global().Get("__webkvInit")
	if init.Type() != js.TypeFunction {
		js.Global().Get("console").Call("error", "webkv.wasm: load it through webkv.js (globalThis.__webkvInit is missing)")
		return
	}
	init.Invoke(api)
	select {}
}
