// webkv's WebGPU reduce and Adam step vs @tensorflow/tfjs-backend-webgpu
// 4.22.0 (tf.addN, tf.train.adam) in one page, each timed to GPU completion
// (onSubmittedWorkDone after the last submit), interleaved so that each sees
// the same machine load (see timeAll). Parameters come from the query
// string: n (floats per array), k (arrays summed), iters, warmup, seed.
// Posts {gpu, webkv: {...ms}, tfjs: {...ms}, check: {...}} for
// tests/browser_bench_test.go.
import * as webkv from '/webkv/webkv.js';
import {rand, gpuBuffer, readGPU, log, post} from './common.js';

const q = new URLSearchParams(location.search);
const N = Number(q.get('n') ?? 4 << 20);
const K = Number(q.get('k') ?? 4);
const ITERS = Number(q.get('iters') ?? 10);
const WARMUP = Number(q.get('warmup') ?? 2);
const SEED = Number(q.get('seed') ?? 1);

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function time(fn) {
  for (let i = 0; i < WARMUP; i++) await fn(i);
  const ts = [];
  for (let i = 0; i < ITERS; i++) {
    const t0 = performance.now();
    await fn(WARMUP + i);
    ts.push(performance.now() - t0);
  }
  return {median: median(ts), min: Math.min(...ts), all: ts};
}

function maxRelErr(got, want) {
  let e = 0;
  for (let i = 0; i < want.length; i++) {
    e = Math.max(e, Math.abs(got[i] - want[i]) / Math.max(1, Math.abs(want[i])));
  }
  return e;
}

// handFused times a one-dispatch vec4 sum of the K buffers and a one-dispatch
// vec4 Adam (the kernels of notes §3.2/§3.3) recorded and submitted by
// hand, to tell webkv's per-call overhead from kernel time.
async function handFused(dev, bufs, g, w0) {
  const len4 = N / 4;
  const wg = Math.ceil(len4 / 64);
  const gx = Math.min(wg, 65535), gy = Math.ceil(wg / 65535);
  const srcs = bufs.map((_, i) => `@group(0) @binding(${i}) var<storage, read> s${i}: array<vec4<f32>>;`).join('\n');
  const sum = bufs.map((_, i) => `s${i}[i]`).join(' + ');
  const redCode = `${srcs}
@group(0) @binding(${K}) var<storage, read_write> d: array<vec4<f32>>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= ${len4}u) { return; }
  d[i] = ${sum};
}`;
  const adamCode = `
@group(0) @binding(0) var<storage, read_write> w: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> m: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> v: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> g: array<vec4<f32>>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= ${len4}u) { return; }
  let gr = g[i];
  let mi = 0.9 * m[i] + 0.1 * gr;
  let vi = 0.999 * v[i] + 0.001 * gr * gr;
  m[i] = mi; v[i] = vi;
  w[i] = w[i] - 0.0001 * mi / (sqrt(vi) + vec4<f32>(1e-8));
}`;
  const op = (code, buffers) => {
    const p = dev.createComputePipeline({layout: 'auto', compute: {module: dev.createShaderModule({code}), entryPoint: 'main'}});
    const bg = dev.createBindGroup({layout: p.getBindGroupLayout(0), entries: buffers.map((buffer, binding) => ({binding, resource: {buffer}}))});
    return async () => {
      const enc = dev.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(p);
      pass.setBindGroup(0, bg);
      pass.dispatchWorkgroups(gx, gy);
      pass.end();
      dev.queue.submit([enc.finish()]);
      await dev.queue.onSubmittedWorkDone();
    };
  };
  const dst = gpuBuffer(dev, null, N);
  const w = gpuBuffer(dev, w0), m = gpuBuffer(dev, null, N), v = gpuBuffer(dev, null, N);
  return {reduce: op(redCode, [...bufs, dst]), adam: op(adamCode, [w, m, v, g])};
}

// timeAll runs every named operation WARMUP times, then ITERS rounds in
// which each runs once, in turn: on a loaded machine all of them see the
// same load, so their ratios hold even when absolute times drift.
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

async function main() {
  const info = await webkv.gpu();
  if (!info.available) return {gpu: info, error: 'no WebGPU: ' + info.reason};
  const dev = info.device;
  log(`webkv on ${info.backend}; n=${N} k=${K} iters=${ITERS}`);
  const out = {gpu: {adapter: info.adapter, backend: info.backend}, n: N, k: K, iters: ITERS, webkv: {}, tfjs: {}, check: {}};

  const data = [];
  for (let i = 0; i < K; i++) data.push(rand(SEED * 100 + i, N));
  const grad = rand(SEED * 100 + 50, N).map((x) => x * 0.01);
  const w0 = rand(SEED * 100 + 51, N);

  // --- webkv: reduce K GPUBuffers into key 0 (push assigns the sum) ---
  const kv = await webkv.create('device', {allowCPUFallback: false});
  out.gpu.store = kv.backend;
  const bufs = data.map((d) => gpuBuffer(dev, d));
  await kv.init(0, new Float32Array(N));
  await kv.push(0, bufs);
  const sum = await readGPU(dev, await kv.pull(0, gpuBuffer(dev, null, N)), N);
  const want = new Float32Array(N);
  for (let j = 0; j < N; j++) {
    let s = data[0][j];
    for (let i = 1; i < K; i++) s = Math.fround(s + data[i][j]);
    want[j] = s;
  }
  out.check.webkvReduceMaxRelErr = maxRelErr(sum, want);

  // Upload and readback through JavaScript memory (what a Float32Array push/pull costs).
  await kv.init(2, new Float32Array(N));
  out.webkv.pushFloat32ArrayMs = (await time(() => kv.push(2, data[0]))).median;
  const host = new Float32Array(N);
  out.webkv.pullFloat32ArrayMs = (await time(() => kv.pull(2, host))).median;
  out.check.webkvRoundTripMaxRelErr = maxRelErr(host, data[0]);

  // --- webkv: one Adam step over N parameters (key 1) ---
  const kvA = await webkv.create('device', {allowCPUFallback: false});
  await kvA.init(1, w0);
  await kvA.setOptimizer({name: 'adam', learning_rate: 0.001});
  const g = gpuBuffer(dev, grad);
  // Check the first step on a fresh store against the same step in JS (MXNet's Adam).
  const kvC = await webkv.create('device', {allowCPUFallback: false});
  await kvC.init(1, w0);
  await kvC.setOptimizer({name: 'adam', learning_rate: 0.001});
  await kvC.push(1, g);
  const w1 = await kvC.pull(1);
  const lr = 0.001 * Math.sqrt(1 - 0.999) / (1 - 0.9);
  const wantW = w0.map((w, j) => {
    const m = 0.1 * grad[j];
    const v = 0.001 * grad[j] * grad[j];
    return w - lr * m / (Math.sqrt(v) + 1e-8);
  });
  out.check.webkvAdamMaxRelErr = maxRelErr(w1, wantW);
  await kvC.close();

  // --- webkv: push of the K arrays to a key with Adam (key 4): the sum is
  // the gradient of one step (Reduce then Step, or the fused ReduceStep where
  // the store uses it) ---
  const kvF = await webkv.create('device', {allowCPUFallback: false});
  await kvF.init(4, w0);
  await kvF.setOptimizer({name: 'adam', learning_rate: 0.001});
  await kvF.push(4, bufs);
  const wF = await kvF.pull(4);
  out.check.webkvReduceAdamMaxRelErr = maxRelErr(wF, w0.map((w, j) => {
    const m = 0.1 * want[j];
    const v = 0.001 * want[j] * want[j];
    return w - lr * m / (Math.sqrt(v) + 1e-8);
  }));

  // --- fixed cost of one call: push of 4 floats (JS→Go→engine→GPU submit→done) ---
  await kv.init(3, new Float32Array(4));
  const tiny = gpuBuffer(dev, new Float32Array(4));
  out.webkv.callOverheadMs = (await time(() => kv.push(3, tiny))).median;

  // --- hand-fused vec4 WGSL kernels in the page: the floor for this adapter ---
  const hand = await handFused(dev, bufs, g, w0);

  // --- tfjs-backend-webgpu 4.22.0 ---
  await tf.setBackend('webgpu');
  await tf.ready();
  const be = tf.backend();
  out.tfjs.version = tf.version_core;
  const flush = async () => {
    be.ensureCommandEncoderReady();
    be.endComputePassEncoder();
    be.submitQueue();
    await be.queue.onSubmittedWorkDone();
  };
  const ts = data.map((d) => tf.tensor1d(d));
  const r = tf.addN(ts);
  out.check.tfjsAddNMaxRelErr = maxRelErr(await r.data(), want);
  r.dispose();
  const wv = tf.variable(tf.tensor1d(w0), true, 'w');
  const gt = tf.tensor1d(grad);
  const opt = tf.train.adam(0.001);
  const wv2 = tf.variable(tf.tensor1d(w0), true, 'w2');
  const opt2 = tf.train.adam(0.001);

  const t = await timeAll({
    webkvReduce: () => kv.push(0, bufs),
    tfjsAddN: async () => {
      const r = tf.addN(ts);
      await flush();
      r.dispose();
    },
    handReduce: hand.reduce,
    webkvAdam: () => kvA.push(1, g),
    tfjsAdam: async () => {
      opt.applyGradients({w: gt});
      await flush();
    },
    handAdam: hand.adam,
    webkvReduceAdam: () => kvF.push(4, bufs),
    tfjsAddNAdam: async () => {
      const r = tf.addN(ts);
      opt2.applyGradients({w2: r});
      await flush();
      r.dispose();
    },
  });
  out.webkv.reduceMs = t.webkvReduce;
  out.webkv.adamMs = t.webkvAdam;
  out.tfjs.addNMs = t.tfjsAddN;
  out.tfjs.adamMs = t.tfjsAdam;
  out.webkv.reduceAdamMs = t.webkvReduceAdam;
  out.tfjs.addNAdamMs = t.tfjsAddNAdam;
  out.handFused = {reduceMs: t.handReduce, adamMs: t.handAdam};
  log(JSON.stringify(out));
  await kv.close();
  await kvA.close();
  await kvF.close();
  wv.dispose();
  wv2.dispose();
  return out;
}

main().then(post, (e) => post({fatal: String(e && e.stack || e)}));
