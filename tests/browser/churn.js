// Opens and closes dist stores in a loop (with pushes in flight and a
// refused token in between), then checks that webkv's Go runtime still
// answers: closing a relay connection must never kill the page's runtime.
import * as webkv from '/webkv/webkv.js';
import {rand, log, post} from './common.js';

const q = new URLSearchParams(location.search);
const url = q.get('url');
const loops = Number(q.get('loops'));

async function main() {
  const out = {closed: 0, refused: 0, errors: []};
  for (let i = 0; i < loops; i++) {
    try {
      const kv = await webkv.create('dist_sync', {url, job: 'churn', token: 'tok'});
      await kv.init(i, rand(i, 64));
      const p = kv.push(i, rand(i + 1, 64));
      if (i % 2) await p;
      await kv.close();
      await p.catch(() => {});
      out.closed++;
    } catch (e) {
      out.errors.push(String(e.message));
    }
    if (i % 4 === 3) {
      try {
        await webkv.create('dist_sync', {url, job: 'churn', token: 'bad', timeoutMs: 1000});
      } catch (e) {
        out.refused++;
      }
    }
  }
  // Still alive?
  const kv = await webkv.create('local');
  await kv.init(0, new Float32Array([1, 2]));
  out.alive = Array.from(await kv.pull(0));
  await kv.close();
  log(JSON.stringify(out));
  return out;
}

main().then(post, (e) => post({fatal: String(e && e.stack || e)}));
