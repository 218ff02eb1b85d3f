// One worker of a dist_sync job whose other worker is native Go
// (TestBrowserDistWithNative): init, barrier, then rounds of push + pull of
// seeded values; posts the pulled sums and the membership it saw.
import * as webkv from '/webkv/webkv.js';
import {rand, log, post} from './common.js';

const q = new URLSearchParams(location.search);
const seed = Number(q.get('seed'));
const rounds = Number(q.get('rounds'));
const n = Number(q.get('n'));
const type = q.get('type');

async function main() {
  const kv = await webkv.create(type, {url: q.get('url'), job: q.get('job'), token: q.get('token'), workers: 2});
  const seen = [];
  kv.on('membership', (d) => seen.push([d.rank, d.numWorkers]));
  const out = {rank: kv.rank, numWorkers: kv.numWorkers, backend: kv.backend, sums: []};
  await kv.init('w', new Float32Array(n));
  await kv.barrier();
  for (let r = 0; r < rounds; r++) {
    await kv.push('w', rand(seed * 100 + r, n));
    out.sums.push(Array.from(await kv.pull('w')));
    log(`round ${r} done`);
  }
  await kv.barrier();
  // The native worker leaves after the last barrier. kvcore learns the
  // membership from barrier answers: barrier until it says so.
  const t0 = performance.now();
  while (kv.numWorkers !== 1 && performance.now() - t0 < 20000) {
    await new Promise((r) => setTimeout(r, 200));
    await kv.barrier();
  }
  out.after = kv.numWorkers;
  out.membership = seen;
  await kv.close();
  return out;
}

main().then(post, (e) => post({fatal: String(e && e.stack || e)}));
