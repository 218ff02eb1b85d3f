// TestBrowserDistEvents: a dist_sync page records the store's events while
// it pushes rounds alone, asks the test (GET /native) to start a native
// worker that joins and leaves the job, pushes one more round, and tries a
// wrong token; it posts what it saw.
import * as webkv from '/webkv/webkv.js';
import {rand, log, post} from './common.js';

const q = new URLSearchParams(location.search);
const url = q.get('url');
const job = q.get('job');
const rounds = Number(q.get('rounds'));

function waitFor(cond, ms, what) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const tick = () => {
      if (cond()) return resolve();
      if (performance.now() - t0 > ms) return reject(new Error(`no ${what} within ${ms} ms`));
      setTimeout(tick, 20);
    };
    tick();
  });
}

async function main() {
  const kv = await webkv.create('dist_sync', {url, job, token: q.get('token')});
  const out = {rounds: [], membership: [], connection: [], rank: kv.rank};
  kv.on('round', (d) => out.rounds.push(d));
  kv.on('membership', (d) => out.membership.push(d));
  kv.on('connection', (d) => out.connection.push(d));
  await kv.init('w', new Float32Array(16));
  for (let r = 0; r < rounds; r++) {
    await kv.push('w', rand(r, 16));
    await kv.pull('w');
  }
  await waitFor(() => out.rounds.length >= rounds, 5000, `${rounds} round events`);
  // A native worker joins, then leaves: no barrier, no call in between.
  const resp = await fetch('/native');
  if (!resp.ok) throw new Error(`/native: HTTP ${resp.status}`);
  await waitFor(() => out.membership.some((m) => m.numWorkers === 2), 20000, 'membership event with 2 workers');
  out.numWorkersWith = kv.numWorkers;
  await fetch('/native/leave');
  await waitFor(() => out.membership.length > 0 && out.membership[out.membership.length - 1].numWorkers === 1, 20000, 'membership event back to 1 worker');
  out.numWorkersAfter = kv.numWorkers;
  await kv.push('w', rand(99, 16));
  await kv.waitAll();
  await waitFor(() => out.rounds.length >= rounds + 1, 5000, 'the round event after the leave');
  await kv.close();

  // A wrong token rejects at once, saying why.
  const t0 = performance.now();
  try {
    await webkv.create('dist_sync', {url, job, token: 'wrong'});
    out.wrong = {ok: true};
  } catch (e) {
    out.wrong = {ok: false, code: e.code, message: String(e.message)};
  }
  out.wrong.ms = performance.now() - t0;
  log(JSON.stringify(out));
  return out;
}

main().then(post, (e) => post({fatal: String(e && e.stack || e)}));
