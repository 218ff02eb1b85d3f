// webkv.js — the browser face of webkv: MXNet's KVStore in JavaScript, on
// WebGPU when the page has it.
//
//   import * as webkv from './webkv.js';
//   const kv = await webkv.create('device');            // or 'local', 'dist_sync' + {url, token, job}
//   await kv.init(3, new Float32Array(1024), [32, 32]);
//   await kv.setOptimizer({name: 'adam', learning_rate: 0.001});
//   await kv.push(3, grad);                            // Float32Array or GPUBuffer, or a list of them (summed)
//   const w = await kv.pull(3);                        // new Float32Array; or kv.pull(3, outFloat32ArrayOrGPUBuffer)
//
// Every method returns a Promise that rejects with an Error whose message is
// kvcore's (it names the operation, the key and what was wrong) and whose
// `code` names the error class ('UNKNOWN_KEY', 'SHAPE_MISMATCH', …).
//
// The module loads webkv.wasm and webkv-go.js (Go's wasm_exec.js from the
// toolchain that built it, wrapped as an ES module by build.sh) from its own
// directory, once per page. It sets no global of the page's: Go's loader
// and the Go program see a scope of their own (a Proxy over globalThis that
// keeps its own writes), in which `wasm` is the instantiated module (the
// WebGPU binding reads Go memory through it), `fs` and `process` are Go's
// stubs, and the loader's hand-over to the Go program happens. Where the
// browser has WebAssembly SIMD it also loads webkv-simd.wasm, small
// hand-written kernels that run the CPU path's loops (reduce, optimizers,
// quantizers) on Go's own memory: stores that compute on the CPU then
// report the backend 'cpu+wasm-simd'. Nothing is written to the console
// unless load or the first create is given {debug: true}.

let loading = null;
let api = null;
let debug = false;
const handles = new Map(); // store id -> KVStore (for events)
// Events of a store whose create() has not resolved yet (connected, the
// first membership): kept until the store has a listener for them, so that
// listeners added after `await create(...)`, or after a Promise.all of
// several creates, see them.
const early = new Map(); // store id -> [[name, detail], ...]
// The command head that sets a job's aggregation rule (the relay's
// psm.CmdAggregate; tests check they agree).
const CMD_AGGREGATE = 17;

/**
 * The error every webkv Promise rejects with: message is kvcore's (it names
 * the operation, the key and what was wrong), code names the class
 * ('UNKNOWN_KEY', 'SHAPE_MISMATCH', 'UNREACHABLE', 'ORIGIN', …).
 */
export class WebKVError extends Error {
  constructor(message, code = 'ERROR') {
    super(message);
    this.name = 'WebKVError';
    this.code = code;
  }
}

// goScope is the global scope Go's loader and the Go program see: reads
// fall through to globalThis, writes stay here.
function goScope() {
  const own = Object.create(null);
  return new Proxy(own, {
    get: (o, k) => (k in o ? o[k] : globalThis[k]),
    set: (o, k, v) => { o[k] = v; return true; },
    has: (o, k) => k in o || k in globalThis,
    deleteProperty: (o, k) => { delete o[k]; return true; },
  });
}

// quietFS is Go's stdout/stderr when debug is off: the last few KB are kept
// for the message of a runtime that exits.
function quietFS(tail) {
  const dec = new TextDecoder('utf-8');
  const enosys = () => { const e = new Error('not implemented'); e.code = 'ENOSYS'; return e; };
  const fs = {
    constants: { O_WRONLY: -1, O_RDWR: -1, O_CREAT: -1, O_TRUNC: -1, O_APPEND: -1, O_EXCL: -1, O_DIRECTORY: -1 },
    writeSync(fd, buf) {
      tail.text = (tail.text + dec.decode(buf)).slice(-4096);
      return buf.length;
    },
    write(fd, buf, offset, length, position, callback) {
      if (offset !== 0 || length !== buf.length || position !== null) { callback(enosys()); return; }
      callback(null, this.writeSync(fd, buf));
    },
    fsync(fd, callback) { callback(null); },
  };
  for (const m of ['chmod', 'chown', 'close', 'fchmod', 'fchown', 'fstat', 'ftruncate', 'lchown', 'link', 'lstat',
    'mkdir', 'open', 'read', 'readdir', 'readlink', 'rename', 'rmdir', 'stat', 'symlink', 'truncate', 'unlink', 'utimes']) {
    fs[m] = (...args) => args[args.length - 1](enosys());
  }
  return fs;
}

// A module of one simd128 function: WebAssembly.validate accepts it only in
// browsers with WebAssembly SIMD.
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 43, 1,
  41, 0, 253, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 253, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 253, 228, 1, 11]);

/** Whether this browser runs WebAssembly SIMD (simd128). */
export function simdSupported() {
  try {
    return WebAssembly.validate(SIMD_PROBE);
  } catch (e) {
    return false;
  }
}

async function compileSIMD(url) {
  if (!simdSupported()) throw new Error('this browser has no WebAssembly SIMD');
  try {
    return await WebAssembly.compileStreaming(fetch(url));
  } catch (e) {
    const resp = await fetch(url);
    if (!resp.ok) throw new Error(`cannot fetch ${url}: HTTP ${resp.status}`);
    return await WebAssembly.compile(await resp.arrayBuffer());
  }
}

/**
 * Instantiates the SIMD kernels (webkv-simd.wasm, or opts.simdURL) over a
 * Go program's memory (its instance's exports.mem) and resolves to their
 * exports, or to {error} saying why there are none; never rejects. load()
 * does this for webkv.wasm; a page that runs its own Go program on webkv's
 * packages calls it before go.run and sets globalThis.__webkvSIMD to the
 * result.
 * @param {WebAssembly.Memory} memory
 * @param {{simdURL?: string|URL}} [opts]
 */
export async function loadSIMD(memory, opts = {}) {
  return instantiateSIMD(compileSIMD(opts.simdURL ?? new URL('./webkv-simd.wasm', import.meta.url)), memory);
}

async function instantiateSIMD(compiling, memory) {
  try {
    const inst = await WebAssembly.instantiate(await compiling, {go: {mem: memory}});
    if (inst.exports.probe() !== 1) throw new Error('the kernels module does not run');
    return inst.exports;
  } catch (e) {
    return {error: String(e && e.message || e)};
  }
}

/**
 * Loads webkv.wasm (once). create() calls it; call it yourself to choose the
 * wasm URL or to load early. simd: false leaves the SIMD kernels out (the
 * CPU path then runs Go's loops); simdURL says where webkv-simd.wasm is;
 * execURL where webkv-go.js is; debug: true logs what webkv does (SIMD
 * kernels missing, CPU fallbacks, relay connections, the Go runtime's
 * output) to the console, which stays silent otherwise.
 * @param {{wasmURL?: string|URL, execURL?: string|URL, simd?: boolean, simdURL?: string|URL, debug?: boolean}} [opts]
 */
export function load(opts = {}) {
  if (opts.debug) debug = true;
  if (loading) return loading;
  loading = (async () => {
    // The kernels download and compile while webkv.wasm does.
    const simd = opts.simd === false
      ? Promise.reject(new Error('left out by the page (load({simd: false}))'))
      : compileSIMD(opts.simdURL ?? new URL('./webkv-simd.wasm', import.meta.url));
    simd.catch(() => {}); // reported through __webkvSIMD below
    const scope = goScope();
    const tail = {text: ''};
    if (!debug && !('fs' in globalThis)) scope.fs = quietFS(tail);
    const {goClass} = await import(String(opts.execURL ?? new URL('./webkv-go.js', import.meta.url)));
    const go = new (goClass(scope))();
    go.exit = (code) => { if (code !== 0 && debug) console.warn('webkv: the Go runtime exited with code', code); };
    const ready = new Promise((resolve) => { scope.__webkvInit = resolve; });
    scope.__webkvDebug = debug;
    const url = opts.wasmURL ?? new URL('./webkv.wasm', import.meta.url);
    let inst;
    try {
      inst = await WebAssembly.instantiateStreaming(fetch(url), go.importObject);
    } catch (e) {
      // Servers that do not send application/wasm: fall back to bytes.
      const resp = await fetch(url);
      if (!resp.ok) throw new WebKVError(`webkv: cannot fetch ${url}: HTTP ${resp.status}`);
      inst = await WebAssembly.instantiate(await resp.arrayBuffer(), go.importObject);
    }
    scope.wasm = inst; // read by github.com/cogentcore/webgpu and package shaders (Go memory)
    // Read by the Go program at start (package wasm/js/simd). A kernels
    // download that stalls must not stall webkv: after 10 s the CPU path
    // runs Go's loops.
    let stalled;
    scope.__webkvSIMD = await Promise.race([
      instantiateSIMD(simd, inst.instance.exports.mem),
      new Promise((resolve) => { stalled = setTimeout(() => resolve({error: 'webkv-simd.wasm did not load within 10 s'}), 10000); }),
    ]);
    clearTimeout(stalled);
    if (scope.__webkvSIMD.error && debug) console.info(`webkv: no SIMD kernels, the CPU path runs Go's loops: ${scope.__webkvSIMD.error}`);
    go.run(inst.instance).then(() => {
      api = null;
      loading = null;
      if (debug) console.error('webkv: the Go runtime exited', tail.text);
    });
    api = await ready;
    delete scope.__webkvInit;
    api.setErrorClass(WebKVError);
    api.setEmitter((id, name, detail) => {
      const kv = handles.get(id);
      if (kv) { kv._emit(name, detail); return; }
      if (!early.has(id)) {
        // Stores whose create failed never claim theirs: keep a few ids.
        if (early.size >= 16) early.delete(early.keys().next().value);
        early.set(id, []);
      }
      const q = early.get(id);
      if (q.length < 64) q.push([name, detail]);
    });
    return api;
  })();
  loading.catch(() => { loading = null; });
  return loading;
}

/**
 * Opens the page's WebGPU device (once) and describes it:
 * {available, adapter, backend, device, limits} or {available: false, reason}.
 * @param {GPUDevice} [device] a device of the page's to use instead of requesting one
 */
export async function gpu(device) {
  const a = await load();
  return a.gpu(device);
}

/**
 * Creates a store: 'local' (reduce on the CPU), 'device' (reduce and update on
 * WebGPU; falls back to the CPU without WebGPU unless allowCPUFallback is
 * false — kv.fallback says why), 'dist_sync', 'dist_async',
 * 'dist_device_sync' (through a relay: opts.url, opts.token, opts.job).
 * @param {string} type
 * @param {object} [opts]
 * @returns {Promise<KVStore>}
 */
export async function create(type, opts = {}) {
  const a = await load(opts);
  const info = await a.create(type, opts);
  const kv = new KVStore(a, info, early.get(info.id) ?? []);
  early.delete(info.id);
  handles.set(info.id, kv);
  if (info.fallback && debug) console.warn(`webkv: '${info.type}' store runs on the CPU: ${info.fallback}`);
  return kv;
}

function isValue(v) {
  return v instanceof Float32Array || (typeof GPUBuffer !== 'undefined' && v instanceof GPUBuffer);
}

// Plain number arrays are accepted for convenience and converted; other
// arrays are lists (values to sum, or one entry per key of a key list).
function value(v) {
  if (!Array.isArray(v)) return v;
  if (v.length > 0 && typeof v[0] === 'number') return Float32Array.from(v);
  return v.map(value);
}

export class KVStore {
  #api; #id; #info; #listeners = new Map();
  // 'connection' and 'membership' events that came before any listener
  // for them (during create or after it): each goes to the first listener
  // added for its name, once.
  #pending;

  constructor(a, info, pending = []) {
    this.#api = a;
    this.#id = info.id;
    this.#info = info;
    this.#pending = pending;
  }

  #refresh() {
    const i = this.#api.info(this.#id);
    if (i) this.#info = i;
    return this.#info;
  }

  /** The store type as created, lower-cased. */
  get type() { return this.#info.type; }
  /** This worker's rank (0 unless dist). */
  get rank() { return this.#refresh().rank; }
  /** The number of workers (1 unless dist). */
  get numWorkers() { return this.#refresh().numWorkers; }
  /**
   * A dist store's websocket bytes so far, {sent, received}: each message
   * with its frame header, every shard and reconnection (0 for others).
   */
  get traffic() { const i = this.#refresh(); return {sent: i.bytesSent, received: i.bytesReceived}; }
  /** What reduces and updates: 'cpu+wasm-simd', 'cpu' (no SIMD) or 'webgpu: <adapter>'. */
  get backend() { return this.#info.backend; }
  /** Why a 'device' store runs on the CPU, or null. */
  get fallback() { return this.#info.fallback; }

  /** init(key, value, shape?): creates key (rank 0's value wins in dist). */
  init(key, val, shape) { return this.#api.init(this.#id, key, value(val), shape); }
  /**
   * push(key, value | value[], priority?): values of one call are summed first.
   * push(keys[], values[], priority?): several keys at once (MXNet's lists);
   * higher priorities run first.
   */
  push(key, val, priority) { return this.#api.push(this.#id, key, value(val), priority); }
  /**
   * pull(key, out?, priority?): into out (Float32Array or GPUBuffer), or a new Float32Array.
   * pull(keys[], outs[]?, priority?) resolves to an array.
   */
  pull(key, out, priority) { return this.#api.pull(this.#id, key, out, priority); }
  /** pushPull(key | keys[], value(s), out(s)?, priority?) */
  pushPull(key, val, out, priority) { return this.#api.pushPull(this.#id, key, value(val), out, priority); }
  /**
   * pushRowSparse(key, {rows, rowIds} | {rows, rowIds}[]): pushes only rows rowIds (strictly
   * increasing) of key, their values back to back in rows; values of one call are summed row by row.
   */
  pushRowSparse(key, val) { return this.#api.pushRowSparse(this.#id, key, val); }
  /**
   * rowSparsePull(key, rowIds, out?): resolves to {rows, rowIds} (the rows asked, sorted, no
   * repeats); with out (a Float32Array of the key's size) writes them there, zeroes the rest,
   * and resolves to out.
   */
  rowSparsePull(key, rowIds, out) { return this.#api.rowSparsePull(this.#id, key, rowIds, out); }
  /**
   * setOptimizer({name: 'adam', learning_rate: 0.001, …}) or setOptimizer('adam'):
   * MXNet's names and defaults (a string is a name, or a spec in JSON).
   */
  setOptimizer(spec) {
    let s = spec;
    try {
      if (typeof spec === 'string' && !spec.trimStart().startsWith('{')) s = JSON.stringify({name: spec});
      else if (typeof spec === 'object' && spec !== null) s = JSON.stringify(spec);
    } catch (e) {
      return Promise.reject(new WebKVError(`webkv: setOptimizer: ${e.message}`, 'BAD_OPTIMIZER'));
    }
    return this.#api.setOptimizer(this.#id, s);
  }
  /** setGradientCompression({type: '2bit'|'1bit', threshold}) */
  setGradientCompression(c) { return this.#api.setGradientCompression(this.#id, c); }
  /**
   * sendCommandToServers(head, body): MXNet's _send_command_to_servers; every
   * server of a dist store handles the command (head an integer, body a
   * string) before the Promise resolves. Local stores ignore it.
   */
  sendCommandToServers(head, body) { return this.#api.sendCommandToServers(this.#id, head, body); }
  /**
   * setAggregate(rule): how the relay combines each dist_sync round's pushes
   * (federated training): 'sum' (MXNet's), 'mean', 'median',
   * 'trimmed-mean=0.1', each optionally with ',clip=C' (clip every push to
   * L2 norm C first). Set by one worker, usually rank 0.
   */
  setAggregate(rule) { return this.sendCommandToServers(CMD_AGGREGATE, rule); }
  /** barrier(): waits for every worker (dist). */
  barrier() { return this.#api.barrier(this.#id); }
  /** waitAll(): waits for every queued operation; rejects with the first failure. */
  waitAll() { return this.#api.waitAll(this.#id); }
  /** saveOptimizerStates(dumpOptimizer?) resolves to a Uint8Array. */
  saveOptimizerStates(dumpOptimizer = false) { return this.#api.saveOptimizerStates(this.#id, dumpOptimizer); }
  /** loadOptimizerStates(Uint8Array | ArrayBuffer) */
  loadOptimizerStates(bytes) { return this.#api.loadOptimizerStates(this.#id, bytes); }
  /** close(): waits for queued work and frees the store. */
  async close() {
    try { await this.#api.close(this.#id); } finally { handles.delete(this.#id); }
  }

  /**
   * on(event, fn), dist stores' events as the relay reports them:
   * 'round' ({key, round, late, rescaled}: a dist_sync round of key closed),
   * 'membership' ({rank, numWorkers, live: ranks}: workers joined or left),
   * 'connection' ({state: 'connected'|'reconnecting'|'reconnected'|'lost', shard, attempt?, message?});
   * also 'gpuerror' ({message}), 'devicelost' ({message}), 'close'. Events a
   * slow page could not take are dropped, and the next one says how many
   * ('dropped'). (A CPU fallback is in kv.fallback and on the console.)
   * Returns a function that removes the listener.
   */
  on(event, fn) {
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(fn);
    const mine = this.#pending.filter(([name]) => name === event);
    if (mine.length > 0) {
      this.#pending = this.#pending.filter(([name]) => name !== event);
      queueMicrotask(() => { for (const [, detail] of mine) call(fn, detail); });
    }
    return () => this.#listeners.get(event)?.delete(fn);
  }

  _emit(name, detail) {
    const fns = this.#listeners.get(name);
    if (fns?.size > 0) {
      for (const fn of fns) call(fn, detail);
      return;
    }
    // No listener yet: the state events wait for the first one (a store
    // of a Promise.all of creates resolves before its siblings, and its
    // membership may change before the page adds listeners to it).
    if (name === 'connection' || name === 'membership') {
      if (this.#pending.length >= 64) this.#pending.shift();
      this.#pending.push([name, detail]);
    }
  }
}

// call runs a listener; one that throws is reported as the browser reports
// any event listener's exception (an uncaught error), and the others still
// run.
function call(fn, detail) {
  try { fn(detail); } catch (e) { queueMicrotask(() => { throw e; }); }
}
