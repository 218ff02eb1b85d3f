// One worker of a dist_sync job for BenchmarkBrowserDistRounds: keys shaped
// like the demo's 784-128-10 MLP, `rounds` rounds of pushPull of every key
// (Float32Array gradients in, weights out: the upload and readback of a
// round). Waits on `start` (a barrier) so that all tabs begin together;
// posts the wall time of the rounds.
import * as webkv from '/webkv/webkv.js';
import {rand, post} from './common.js';

const q = new URLSearchParams(location.search);
const rounds = Number(q.get('rounds'));
const workers = Number(q.get('workers'));
const type = q.get('type');
const shapes = [[784, 128], [128], [128, 10], [10]];

async function main() {
  const kv = await webkv.create(type, {url: q.get('url'), job: q.get('job'), token: 'tok', workers});
  await kv.setOptimizer({name: 'sgd', learning_rate: 0.1});
  const grads = shapes.map((s, i) => rand(1000 + i, s.reduce((a, b) => a * b)).map((x) => x * 0.01));
  const outs = grads.map((g) => new Float32Array(g.length));
  for (let i = 0; i < shapes.length; i++) await kv.init(i, new Float32Array(grads[i].length), shapes[i]);
  await kv.barrier();
  // one warm-up round
  await Promise.all(grads.map((g, i) => kv.pushPull(i, g, outs[i])));
  await kv.barrier();
  const t0 = performance.now();
  for (let r = 0; r < rounds; r++) {
    await Promise.all(grads.map((g, i) => kv.pushPull(i, g, outs[i])));
  }
  const ms = performance.now() - t0;
  await kv.barrier();
  await kv.close();
  return {ms, rank: kv.rank, numWorkers: workers, backend: kv.backend, w0: outs[3][0]};
}

main().then(post, (e) => post({fatal: String(e && e.stack || e)}));
