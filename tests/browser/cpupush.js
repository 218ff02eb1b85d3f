// The whole path from JavaScript arrays, in a page without WebGPU: webkv's
// runtime (webkv.js, webkv.wasm, its SIMD kernels) pushing Float32Arrays to
// a 'local' store (copied into Go memory, then summed, or stepped with
// Adam) vs tfjs-backend-wasm 4.22.0 uploading the same arrays (tf.tensor1d)
// and running tf.addN or an Adam step on them. Query: n, k, iters, warmup,
// seed. Posts {backend, webkv: {...ms}, tfjs: {...ms}, check} for
// tests/browser_bench_test.go (BenchmarkBrowserCPU).
import * as webkv from '/webkv/webkv.js';
import {rand, log, post} from './common.js';

const q = new URLSearchParams(location.search);
const N = Number(q.get('n') ?? 4 << 20);
const K = Number(q.get('k') ?? 4);
const ITERS = Number(q.get('iters') ?? 9);
const WARMUP = Number(q.get('warmup') ?? 3);
const SEED = Number(q.get('seed') ?? 1);

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

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
  const out = {n: N, k: K, webkv: {}, tfjs: {}, check: {}};
  const data = [];
  for (let i = 0; i < K; i++) data.push(rand(SEED * 100 + i, N));
  const grad = rand(SEED * 100 + 50, N).map((x) => x * 0.01);
  const w0 = rand(SEED * 100 + 51, N);

  const kv = await webkv.create('local');
  out.backend = kv.backend;
  log(`webkv 'local' store on ${kv.backend}`);
  await kv.init(0, new Float32Array(N));
  await kv.init(1, w0);
  const kvA = await webkv.create('local');
  await kvA.init(1, w0);
  await kvA.setOptimizer({name: 'adam', learning_rate: 0.001});
  await kv.push(0, data);
  const sum = await kv.pull(0);
  let bad = 0;
  for (let j = 0; j < N; j++) {
    let s = data[0][j];
    for (let i = 1; i < K; i++) s = Math.fround(s + data[i][j]);
    if (s !== sum[j]) bad++;
  }
  out.check.webkvPushReduceWrong = bad;

  tf.wasm.setWasmPaths('/tfjs/tfjs-backend-wasm/dist/');
  await tf.setBackend('wasm');
  await tf.ready();
  out.tfjs.backend = tf.getBackend();
  out.tfjs.simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  tf.variable(tf.tensor1d(w0), true, 'w');
  const opt = tf.train.adam(0.001);

  const t = await timeAll({
    webkvPushReduce: () => kv.push(0, data),
    tfjsUploadAddN: () => {
      const ts = data.map((d) => tf.tensor1d(d));
      tf.addN(ts).dispose();
      ts.forEach((x) => x.dispose());
    },
    webkvPushAdam: () => kvA.push(1, grad),
    tfjsUploadAdam: () => {
      const g = tf.tensor1d(grad);
      opt.applyGradients({w: g});
      g.dispose();
    },
  });
  out.webkv.pushReduceMs = t.webkvPushReduce;
  out.webkv.pushAdamMs = t.webkvPushAdam;
  out.tfjs.uploadAddNMs = t.tfjsUploadAddN;
  out.tfjs.uploadAdamMs = t.tfjsUploadAdam;
  await kv.close();
  await kvA.close();
  log(JSON.stringify(out));
  return out;
}

main().then(post, (e) => post({fatal: String(e && e.stack || e)}));
