// webkv's CPU path (kvcore on the WebAssembly SIMD kernels, and on Go's
// loops) vs @tensorflow/tfjs-backend-wasm 4.22.0 with SIMD (tf.addN,
// tf.train.adam) in one page without WebGPU, operations interleaved so that
// each sees the same machine load (see timeAll). webkv's side is the Go
// program tests/browsercpu (kvcore stores on arrays already in Go memory,
// as tfjs's tensors are already in its wasm memory), loaded through
// webkv.js with its SIMD kernels. Query: n, k, iters, warmup, seed, sweep
// (1: also time small sizes for the SIMD/Go crossover). Posts
// {simd, webkv: {simd: {...ms}, go: {...ms}}, tfjs: {...ms}, check, sweep}
// for tests/browser_bench_test.go.
import * as webkv from '/webkv/webkv.js';
import {rand, log, post} from './common.js';

const q = new URLSearchParams(location.search);
const N = Number(q.get('n') ?? 4 << 20);
const K = Number(q.get('k') ?? 4);
const ITERS = Number(q.get('iters') ?? 9);
const WARMUP = Number(q.get('warmup') ?? 3);
const SEED = Number(q.get('seed') ?? 1);
const SWEEP = q.get('sweep') === '1';

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// timeAll runs every named operation WARMUP times, then ITERS rounds in
// which each runs once, in turn, and returns each one's median.
async function timeAll(ops) {
  const names = Object.keys(ops);
  for (const n of names) for (let i = 0; i < WARMUP; i++) await ops[n]();
  const ts = Object.fromEntries(names.map((n) => [n, []]));
  for (let i = 0; i < ITERS; i++) {
    for (const n of names) {
      const t0 = performance.now();
      await ops[n]();
      ts[n].push(performance.now() - t0);
    }
  }
  return Object.fromEntries(names.map((n) => [n, median(ts[n])]));
}

function maxRelErr(got, want) {
  let e = 0;
  for (let i = 0; i < want.length; i++) {
    e = Math.max(e, Math.abs(got[i] - want[i]) / Math.max(1, Math.abs(want[i])));
  }
  return e;
}

// differingBits counts the elements whose float32 bits differ.
function differingBits(a, b) {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  let d = 0;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) d++;
  return d;
}

async function main() {
  log(`n=${N} k=${K} iters=${ITERS} warmup=${WARMUP} seed=${SEED}; navigator.gpu = ${navigator.gpu}`);
  const out = {n: N, k: K, iters: ITERS, webkv: {simd: {}, go: {}}, tfjs: {}, check: {}};
  const data = [];
  for (let i = 0; i < K; i++) data.push(rand(SEED * 100 + i, N));
  const grad = rand(SEED * 100 + 50, N).map((x) => x * 0.01);
  const w0 = rand(SEED * 100 + 51, N);
  const want = new Float32Array(N);
  for (let j = 0; j < N; j++) {
    let s = data[0][j];
    for (let i = 1; i < K; i++) s = Math.fround(s + data[i][j]);
    want[j] = s;
  }

  // --- webkv: the bench program through webkv.js (SIMD kernels included) ---
  const api = await webkv.load({wasmURL: '/browsercpu.wasm'});
  const info = await api.setup({n: N, k: K, data, grad, w0});
  out.simd = info.simd;
  out.minLen = info.minLen;
  log(`webkv CPU backends: simd = ${info.simd}`);
  const backends = String(info.simd).startsWith('unavailable') ? ['go'] : ['simd', 'go'];
  for (const b of backends) {
    await api.run(b, 'reduce');
    out.check[`${b}ReduceMaxRelErr`] = maxRelErr(await api.pull(b, 'reduce'), want);
  }

  // --- tfjs-backend-wasm 4.22.0, SIMD on (threads need cross-origin isolation) ---
  tf.wasm.setWasmPaths('/tfjs/tfjs-backend-wasm/dist/');
  await tf.setBackend('wasm');
  await tf.ready();
  out.tfjs.version = tf.version_core;
  out.tfjs.backend = tf.getBackend();
  out.tfjs.simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  out.tfjs.threads = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
  const ts = data.map((d) => tf.tensor1d(d));
  const r = tf.addN(ts);
  out.check.tfjsAddNMaxRelErr = maxRelErr(r.dataSync(), want);
  r.dispose();
  tf.variable(tf.tensor1d(w0), true, 'w');
  tf.variable(tf.tensor1d(w0), true, 'w2');
  const gt = tf.tensor1d(grad);
  const opt = tf.train.adam(0.001);
  const opt2 = tf.train.adam(0.001);

  const ops = {
    tfjsAddN: () => { tf.addN(ts).dispose(); },
    tfjsAdam: () => { opt.applyGradients({w: gt}); },
    tfjsAddNAdam: () => {
      const s = tf.addN(ts);
      opt2.applyGradients({w2: s});
      s.dispose();
    },
  };
  for (const b of backends) {
    for (const op of ['reduce', 'adam', 'reduceAdam', 'kreduce', 'kadam', 'kquant2', 'tiny']) ops[`${b}:${op}`] = () => api.run(b, op);
  }
  const t = await timeAll(ops);
  out.tfjs.addNMs = t.tfjsAddN;
  out.tfjs.adamMs = t.tfjsAdam;
  out.tfjs.addNAdamMs = t.tfjsAddNAdam;
  for (const b of backends) {
    for (const op of ['reduce', 'adam', 'reduceAdam', 'kreduce', 'kadam', 'kquant2', 'tiny']) out.webkv[b][`${op}Ms`] = t[`${b}:${op}`];
  }

  // Both backends ran every operation the same number of times: their
  // weights must have the same bits.
  if (backends.length === 2) {
    for (const op of ['adam', 'reduceAdam', 'kadam']) {
      out.check[`${op}SimdVsGoDifferingBits`] = differingBits(await api.pull('simd', op), await api.pull('go', op));
    }
  }
  if (SWEEP && backends.length === 2) {
    out.sweep = await api.sweep({sizes: [16, 64, 256, 512, 1024, 2048, 4096, 16384, 65536], ms: 15});
  }
  log(JSON.stringify(out));
  return out;
}

main().then(post, (e) => post({fatal: String(e && e.stack || e)}));
