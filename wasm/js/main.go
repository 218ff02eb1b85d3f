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
// The loader protocol: webkv.js runs this program in a scope of its own (Go's
// js.Global() is that scope, a Proxy over the page's globalThis that keeps
// its own writes, so nothing here becomes a global of the page's). There it
// defines __webkvInit(api), __webkvDebug (whether to log to the console),
// __webkvSIMD (package simd) and wasm, the WebAssembly.instantiate result
// (the WebGPU binding reads wasm memory through it); this program calls
// __webkvInit with its API object and parks. The page then hands it the
// class of its errors (api.setErrorClass(WebKVError)) and its event
// dispatcher (api.setEmitter).
package main

import (
	"syscall/js"
)

func main() {
	api := js.Global().Get("Object").New()
	api.Set("create", js.FuncOf(jsCreate))
	api.Set("gpu", js.FuncOf(jsGPU))
	api.Set("info", js.FuncOf(jsInfo))
	api.Set("setErrorClass", js.FuncOf(func(this js.Value, args []js.Value) any {
		if len(args) == 1 && args[0].Type() == js.TypeFunction {
			errorClass = args[0]
		}
		return nil
	}))
	debug = js.Global().Get("__webkvDebug").Truthy()
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
