// TestBrowserJSAPI (issue 11, item 8): the page imports webkv.js only after
// it noted the page's globals, then checks what a user of the .d.ts relies
// on, and posts what it saw. It writes nothing to the console itself: the
// test counts the console messages (none without ?debug=1).
const q = new URLSearchParams(location.search);
const url = q.get('url');
const job = q.get('job');
const debug = q.get('debug') === '1';

const before = new Set(Object.getOwnPropertyNames(globalThis));

async function rejection(p) {
  try {
    await p;
    return {ok: true};
  } catch (e) {
    return {ok: false, name: e?.name, code: e?.code, message: String(e?.message), isError: e instanceof Error, isWebKV: e instanceof webkv.WebKVError};
  }
}

let webkv;
async function main() {
  webkv = await import('/webkv/webkv.js');
  await webkv.load({debug});
  const out = {};
  const kv = await webkv.create('local');
  await kv.init(1, new Float32Array(4));
  out.unknownKey = await rejection(kv.pull(99));
  out.badArg = await rejection(kv.push(1, 'not an array'));
  // Optimizer names as strings, as MXNet's kv.set_optimizer(mx.optimizer.create('sgd')).
  out.sgd = await rejection(kv.setOptimizer('sgd'));
  out.adam = await rejection(kv.setOptimizer('adam'));
  out.json = await rejection(kv.setOptimizer('{"name": "nag", "momentum": 0.9}'));
  out.nope = await rejection(kv.setOptimizer('nope'));
  await kv.push(1, new Float32Array([1, 2, 3, 4]));
  out.after = Array.from(await kv.pull(1));
  await kv.close();

  // Two stores created together: both see their 'connection' and first
  // 'membership' events, though the listeners come after Promise.all.
  const [a, b] = await Promise.all([
    webkv.create('dist_sync', {url, job, workers: 2}),
    webkv.create('dist_sync', {url, job, workers: 2}),
  ]);
  const seen = [{connection: [], membership: []}, {connection: [], membership: []}];
  [a, b].forEach((s, i) => {
    s.on('connection', (d) => seen[i].connection.push(d.state));
    s.on('membership', (d) => seen[i].membership.push(d.numWorkers));
  });
  await new Promise((r) => setTimeout(r, 0)); // the pending events are delivered in a microtask
  await Promise.all([a.init('w', new Float32Array(8)), b.init('w', new Float32Array(8))]);
  // Rank 0 sets the job's aggregation (federated training): the mean of
  // the two pushes, not their sum; a rule the relay does not know is refused.
  const first = a.rank === 0 ? a : b;
  out.badRule = await rejection(first.setAggregate('nope'));
  await first.setAggregate('mean');
  await Promise.all([a.push('w', new Float32Array(8).fill(1)), b.push('w', new Float32Array(8).fill(2))]);
  out.sum = Array.from(await a.pull('w'));
  out.traffic = a.traffic;
  out.events = seen;
  out.ranks = [a.rank, b.rank].sort();
  await Promise.all([a.close(), b.close()]);

  // A membership change that comes after create resolved but before the
  // page listens (the race of a Promise.all, made certain): c sees d join
  // (its numWorkers turns 2, set as the event is emitted), then listens.
  const c = await webkv.create('dist_sync', {url, job: job + '-late', workers: 1});
  const d = await webkv.create('dist_sync', {url, job: job + '-late', workers: 1});
  for (let i = 0; c.numWorkers !== 2 && i < 1000; i++) await new Promise((r) => setTimeout(r, 10));
  const late = [];
  c.on('membership', (e) => late.push(e.numWorkers));
  await new Promise((r) => setTimeout(r, 0)); // the pending events are delivered in a microtask
  out.late = late.slice(); // before d leaves
  await Promise.all([c.close(), d.close()]);

  // A relay that is not there: at once, code UNREACHABLE, the address named.
  let t0 = performance.now();
  out.unreachable = await rejection(webkv.create('dist_sync', {url: 'ws://127.0.0.1:9/ws', job}));
  out.unreachable.ms = performance.now() - t0;
  // A relay that refuses this page's origin: code ORIGIN with the relay's reason.
  t0 = performance.now();
  out.origin = await rejection(webkv.create('dist_sync', {url: q.get('strict'), job}));
  out.origin.ms = performance.now() - t0;

  out.leaked = Object.getOwnPropertyNames(globalThis).filter((n) => !before.has(n));
  return out;
}

main().then(
  (out) => { window.__webkvResult = JSON.stringify(out); },
  (e) => { window.__webkvResult = JSON.stringify({fatal: String(e && e.stack || e)}); },
);
