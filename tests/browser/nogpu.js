// A page without WebGPU: 'device' stores fall back to the CPU and say why;
// allowCPUFallback: false rejects. The CPU path runs on webkv's WebAssembly
// SIMD kernels (backend 'cpu+wasm-simd'), or on Go's loops with ?simd=0
// (load({simd: false}), backend 'cpu'), as when the kernels cannot be loaded
// (?simdurl= a missing file); either way its results must be the
// native CPU reference's bits: an Adam key (one pushed gradient, then two,
// summed by the fused reduce+step), a 2bit-compressed key and a plain sum,
// all of n values (query: n, seed). Posts what it saw for
// tests/browser_test.go.
import * as webkv from '/webkv/webkv.js';
import {rand, hex, log, post} from './common.js';

const q = new URLSearchParams(location.search);
const N = Number(q.get('n') ?? 10003);
const SEED = Number(q.get('seed') ?? 1);

function bytes(f32) {
  return new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength);
}

async function main() {
  await webkv.load({simd: q.get('simd') !== '0', simdURL: q.get('simdurl') ?? undefined});
  const out = {};
  out.simdSupported = webkv.simdSupported();
  out.gpu = await webkv.gpu();
  delete out.gpu.device;
  const kv = await webkv.create('device');
  out.backend = kv.backend;
  out.fallback = kv.fallback;
  await kv.init('w', new Float32Array([1, 2, 3, 4]), [2, 2]);
  await kv.push('w', [new Float32Array([1, 1, 1, 1]), new Float32Array([0.5, 0.5, 0.5, 0.5])]);
  out.pulled = Array.from(await kv.pull('w'));
  // The CPU path at a size the kernels take.
  await kv.init('sum', new Float32Array(N));
  await kv.push('sum', [rand(SEED, N), rand(SEED + 1, N), rand(SEED + 2, N)]);
  out.sum = hex(bytes(await kv.pull('sum')));
  await kv.close();
  const kvA = await webkv.create('device');
  await kvA.init('p', rand(SEED + 3, N));
  await kvA.setOptimizer({name: 'adam', learning_rate: 0.01, wd: 0.001, clip_gradient: 0.5});
  await kvA.push('p', rand(SEED + 4, N));
  await kvA.push('p', [rand(SEED + 5, N), rand(SEED + 6, N)]);
  out.adam = hex(bytes(await kvA.pull('p')));
  await kvA.close();
  const kvC = await webkv.create('device');
  await kvC.setGradientCompression({type: '2bit', threshold: 0.5});
  await kvC.init('c', new Float32Array(N));
  for (let round = 0; round < 2; round++) {
    await kvC.push('c', [rand(SEED + 7 + 2 * round, N), rand(SEED + 8 + 2 * round, N)]);
  }
  out.compressed = hex(bytes(await kvC.pull('c')));
  await kvC.close();
  try {
    await webkv.create('device', {allowCPUFallback: false});
    out.strict = 'resolved';
  } catch (e) {
    out.strict = `${e.code}: ${e.message}`;
  }
  log(JSON.stringify({...out, sum: out.sum.length, adam: out.adam.length, compressed: out.compressed.length}));
  return out;
}

main().then(post, (e) => post({fatal: String(e && e.stack || e)}));
