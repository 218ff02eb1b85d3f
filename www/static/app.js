// The demo page: join the job, train, report, and show the dashboard.
// Query parameters: ?watch (only show the dashboard: the tab neither joins
// the job nor loads the runtime, so watching never slows it), ?job=…, ?cpu
// (force the CPU engine), ?rounds=N; the token comes from #token=… or
// /api/config.
import { CpuMLP } from './cpu.js';
import { GpuMLP, openGPU } from './gpu.js';
import { draw, color } from './chart.js';

const SHAPE = { In: 784, Hidden: 128, Out: 10 };
const KEYS = ['w1', 'b1', 'w2', 'b2'];
const $ = (id) => document.getElementById(id);
const qs = new URLSearchParams(location.search);
const hash = new URLSearchParams(location.hash.slice(1));
const myID = 'tab-' + Math.random().toString(16).slice(2, 8);

const watching = qs.has('watch');
// job_round: the job's round as this tab saw it (its round events), so
// that the dashboard plots every peer on the job's rounds.
const me = { id: myID, kind: 'browser', backend: '', rank: -1, workers: 0, state: watching ? 'watching' : 'joining', round: 0,
  job_round: 0, samples: 0, loss: 0, test_acc: 0, test_loss: 0, samples_per_sec: 0, message: '', phases_ms: {} };
let cfg = null, token = '', kv = null, leaving = false;
window.__demo = me; // for automated tests: state, round, test_acc, backend
// For automated tests: what the dashboard last showed (the job, and the
// chart's series in job rounds).
window.__dashboard = { job: null, series: [], refreshes: 0 };

function status(text, cls = '') { const s = $('status'); s.textContent = text; s.className = cls; }
function fail(e, where) {
  console.error(where, e);
  me.state = 'error'; me.message = `${where}: ${e && e.message ? e.message : e}`;
  status(me.message, 'error'); report();
}

// Reports go out one at a time, each with the state at its sending, so a
// late 'training' report can never overtake the final 'done'.
let reportChain = Promise.resolve();
function report() {
  if (watching || !cfg) return reportChain;
  if (kv) { const t = kv.traffic; me.bytes = t.sent + t.received; } // this tab's websocket bytes
  reportChain = reportChain.then(() => fetch('/api/report', { method: 'POST', keepalive: true,
    headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ ...me, token }) })).catch(() => { /* best effort */ });
  return reportChain;
}

// Leaving cleanly: tell the dashboard (sendBeacon survives the unload) and
// close the store so the relay drops this worker from the round at once
// instead of waiting for its heartbeat timeout.
function leave() {
  if (leaving || watching) return;
  leaving = true;
  me.state = 'left';
  navigator.sendBeacon('/api/leave', JSON.stringify({ id: myID, token }));
  if (kv) kv.close().catch(() => {});
}
addEventListener('pagehide', leave);
addEventListener('beforeunload', leave);
$('leave').onclick = () => { leave(); status('Left the job. Reload the page to join again.', 'warn'); };

// Seeded normal numbers (mulberry32 + Box–Muller) for the initial weights:
// rank 0's values win in dist init, so they only need to be sensible.
function uniform(seed) {
  let a = seed >>> 0;
  return () => { a = (a + 0x6d2b79f5) >>> 0; let t = a; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
}
function rng(seed) {
  const u = uniform(seed);
  return () => Math.sqrt(-2 * Math.log(u() + 1e-12)) * Math.cos(2 * Math.PI * u());
}
function initParams(seed) {
  const { In, Hidden: H, Out: O } = SHAPE, n = rng(seed);
  const p = { w1: new Float32Array(In * H), b1: new Float32Array(H), w2: new Float32Array(H * O), b2: new Float32Array(O) };
  const s1 = Math.sqrt(2 / In), s2 = Math.sqrt(2 / H);
  for (let i = 0; i < p.w1.length; i++) p.w1[i] = n() * s1;
  for (let i = 0; i < p.w2.length; i++) p.w2[i] = n() * s2;
  return p;
}
const zeros = () => ({ w1: new Float32Array(SHAPE.In * SHAPE.Hidden), b1: new Float32Array(SHAPE.Hidden),
  w2: new Float32Array(SHAPE.Hidden * SHAPE.Out), b2: new Float32Array(SHAPE.Out) });
const shapes = { w1: [SHAPE.In, SHAPE.Hidden], b1: [SHAPE.Hidden], w2: [SHAPE.Hidden, SHAPE.Out], b2: [SHAPE.Out] };

// fetchShard decodes package mnist's shard format (www/mnist/shard.go).
async function fetchShard(url) {
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}: ${await resp.text()}`);
  const buf = await resp.arrayBuffer(), dv = new DataView(buf);
  if (buf.byteLength < 28 || new TextDecoder().decode(new Uint8Array(buf, 0, 4)) !== 'WKM1') throw new Error(`${url}: not a webkv shard`);
  const n = dv.getUint32(4, true), lpad = (n + 3) & ~3;
  if (buf.byteLength !== 28 + lpad + n * 784) throw new Error(`${url}: ${buf.byteLength} bytes for ${n} samples`);
  const labels = new Uint8Array(buf, 28, n), px = new Uint8Array(buf, 28 + lpad, n * 784);
  return { n, labels, px };
}
function toInputs(set, idx, x, y) {
  for (let k = 0; k < idx.length; k++) {
    const i = idx[k];
    for (let j = 0; j < 784; j++) x[k * 784 + j] = set.px[i * 784 + j] / 255;
    y[k] = set.labels[i];
  }
}

async function train() {
  // 1. Engine: WebGPU with the shared WGSL kernels, else the CPU.
  let engine;
  const maxBatch = Math.max(cfg.batch, 256);
  if (!qs.has('cpu')) {
    try {
      const { device, adapter } = await openGPU();
      engine = await GpuMLP.create(device, SHAPE, maxBatch);
      me.backend = `webgpu: ${adapter}`;
      device.lost.then((info) => fail(new Error(info.message), 'WebGPU device lost'));
    } catch (e) {
      me.backend = `cpu (no WebGPU: ${e.message})`;
    }
  } else me.backend = 'cpu (forced by ?cpu)';
  if (!engine) engine = new CpuMLP(SHAPE);
  $('m-backend').textContent = me.backend;

  // 2. Join the job through webkv; without the runtime, train alone.
  status('Joining the job…'); report();
  let solo = '';
  try {
    const webkv = await import('/webkv/webkv.js');
    // resume: a tab that joins the demo's job continues its training, also
    // after the native workers finished and left (the relay otherwise
    // refuses an init of the keys of that earlier run: EARLIER_RUN).
    kv = await webkv.create(cfg.type, { url: location.origin, token, job: qs.get('job') || cfg.job, timeoutMs: 30000, resume: true });
    kv.on('connection', (d) => {
      // connected | reconnecting | reconnected | lost (kvcore's connection events)
      if (d.state === 'connected') return;
      const level = d.state === 'lost' ? 'error' : d.state === 'reconnected' ? '' : 'warn';
      status(`Relay connection ${d.state}${d.attempt ? ' (attempt ' + d.attempt + ')' : ''}${d.message ? ': ' + d.message : ''}`, level);
    });
    // Rounds count from 0 per key; a closed round n means n+1 rounds done.
    kv.on('round', (d) => { if (!d.late) me.job_round = Math.max(me.job_round, d.round + 1); });
  } catch (e) {
    solo = `webkv unavailable (${e.message}): training alone in this tab`;
    kv = null;
  }
  me.rank = kv ? kv.rank : 0;
  me.workers = kv ? kv.numWorkers : 1;
  const init = initParams(cfg.seed);
  const H = kv ? Math.max(1, cfg.local_steps || 1) : 1; // local steps per round
  let w = init;
  if (kv) {
    for (const k of KEYS) {
      try { await kv.init(k, init[k], shapes[k]); } catch (e) { if (e.code !== 'DUPLICATE_INIT') throw e; }
    }
    // MXNet's rule: only rank 0 sends the optimizer to the servers.
    // With local steps (the job's mode, www/worker's federated.go) the
    // job's optimizer is the outer one. (The aggregation rule is a
    // command the JS API does not send: the demo's native rank 0 sets it.)
    if (kv.rank === 0) await kv.setOptimizer(H > 1
      ? (cfg.outer === 'fedavg' ? { name: 'sgd', learning_rate: 1 } : { name: 'nag', learning_rate: cfg.outer_learning_rate, momentum: cfg.outer_momentum })
      : { name: 'sgd', learning_rate: cfg.learning_rate, momentum: cfg.momentum });
    if (cfg.compression) { const [type, th] = cfg.compression.split(','); await kv.setGradientCompression({ type, threshold: Number(th) }); }
    // Workers that start the job together meet once after set-up, so that
    // nobody pushes before rank 0 set the optimizer; later joiners skip it.
    if (cfg.start_workers > 0 && kv.rank < cfg.start_workers) { status('Waiting for the other workers…'); await kv.barrier(); }
  }

  // 3. Data: this peer's shard and the test subset.
  me.state = 'loading'; status('Loading data…'); report();
  const shardIdx = ((me.rank % cfg.shards) + cfg.shards) % cfg.shards;
  const [shard, test] = await Promise.all([
    fetchShard(`/data/shard?i=${shardIdx}&n=${cfg.shards}&iid=${cfg.iid ? 1 : 0}&seed=${cfg.seed}&max=${cfg.max_per_shard || 0}`),
    fetchShard('/data/test'),
  ]);
  // Periodic evaluations use the first test_size images, the final one all
  // of them: the same as native workers, so that every peer's final
  // accuracy is measured on the same 10000 images.
  const tx = new Float32Array(test.n * 784), ty = new Uint8Array(test.n);
  toInputs(test, [...Array(test.n).keys()], tx, ty);
  const tn = Math.min(test.n, cfg.test_size || test.n);
  const px = tx.subarray(0, tn * 784), py = ty.subarray(0, tn);

  // 4. Rounds: pull weights, compute the gradient of a batch, push it.
  me.state = 'training';
  status(solo || `Training on shard ${shardIdx} of ${cfg.shards} (${shard.n} samples, ${cfg.iid ? 'IID' : 'non-IID'}) as rank ${me.rank}.`, solo ? 'warn' : '');
  const rounds = Number(qs.get('rounds')) || cfg.rounds || Infinity;
  const B = cfg.batch, x = new Float32Array(B * 784), y = new Uint8Array(B), g = zeros();
  const mom = zeros(), vel = zeros(), wStart = zeros();
  let innerT = 0;
  // The inner optimizer of local steps: SGD with momentum, or Adam.
  const innerStep = () => {
    innerT++;
    const lrA = cfg.learning_rate * Math.sqrt(1 - 0.999 ** innerT) / (1 - 0.9 ** innerT);
    for (const k of KEYS) {
      const wk = w[k], gk = g[k], m = mom[k], v = vel[k];
      for (let i = 0; i < wk.length; i++) {
        if (cfg.inner === 'adam') { m[i] = 0.9 * m[i] + 0.1 * gk[i]; v[i] = 0.999 * v[i] + 0.001 * gk[i] * gk[i]; wk[i] -= lrA * m[i] / (Math.sqrt(v[i]) + 1e-8); } else { m[i] = cfg.momentum * m[i] - cfg.learning_rate * gk[i]; wk[i] += m[i]; }
      }
    }
  };
  const nextBatch = () => {
    const idx = [];
    while (idx.length < B) {
      if (pos === order.length) { for (let i = order.length - 1; i > 0; i--) { const j = Math.floor(rand() * (i + 1)); [order[i], order[j]] = [order[j], order[i]]; } pos = 0; }
      idx.push(order[pos++]);
    }
    toInputs(shard, idx, x, y);
  };
  // The batch order is seeded by the job's seed and this peer's rank, so
  // that a run can be replayed (native workers do the same).
  const rand = uniform(cfg.seed * 7919 + me.rank + 1);
  let order = [...Array(shard.n).keys()], pos = order.length, t0 = performance.now(), s0 = 0;
  // Where a round's time goes (ms, summed; phases_ms holds the means).
  const tot = {};
  const add = (k, ms) => { tot[k] = (tot[k] || 0) + ms; };
  let t = performance.now();
  const lap = (k) => { const now = performance.now(); add(k, now - t); t = now; };
  while (me.round < rounds && !leaving) {
    t = performance.now();
    if (kv) {
      const vals = await Promise.all(KEYS.map((k) => kv.pull(k)));
      w = Object.fromEntries(KEYS.map((k, i) => [k, vals[i]]));
      me.workers = kv.numWorkers;
      lap('pull');
    }
    engine.setParams(w);
    lap('upload');
    if (H > 1) for (const k of KEYS) wStart[k].set(w[k]);
    let r;
    for (let h = 0; h < H; h++) {
      if (h > 0) { engine.setParams(w); lap('upload'); }
      nextBatch();
      lap('batch');
      r = await engine.grad(x, y, g);
      if (engine.timing) { add('compute', engine.timing.compute); add('readback', engine.timing.readback); t = performance.now(); } else lap('grad');
      me.loss = me.round || h ? 0.9 * me.loss + 0.1 * r.loss : r.loss;
      if (H > 1) innerStep();
    }
    // Local steps push the weight change w_start − w (the pseudo-gradient).
    if (H > 1) for (const k of KEYS) { const gk = g[k], a = wStart[k], b = w[k]; for (let i = 0; i < gk.length; i++) gk[i] = a[i] - b[i]; }
    if (kv) {
      // The server sums the round's pushes by default: push this worker's
      // share of the mean; the averaging rules take it whole.
      const whole = cfg.aggregate && !cfg.aggregate.startsWith('sum');
      const inv = whole ? 1 : 1 / Math.max(1, me.workers);
      await Promise.all(KEYS.map((k) => { const v = g[k]; for (let i = 0; i < v.length; i++) v[i] *= inv; return kv.push(k, v); }));
      lap('push');
    } else {
      for (const k of KEYS) for (let i = 0; i < w[k].length; i++) { mom[k][i] = cfg.momentum * mom[k][i] - cfg.learning_rate * g[k][i]; w[k][i] += mom[k][i]; }
    }
    me.round++; me.samples += B * H;
    me.phases_ms = Object.fromEntries(Object.entries(tot).map(([k, v]) => [k, v / me.round]));
    const now = performance.now();
    if (now - t0 > 1000) { me.samples_per_sec = ((me.samples - s0) * 1000) / (now - t0); t0 = now; s0 = me.samples; }
    if (me.round % cfg.eval_every === 0 || me.round === rounds) {
      if (kv) { const vals = await Promise.all(KEYS.map((k) => kv.pull(k))); w = Object.fromEntries(KEYS.map((k, i) => [k, vals[i]])); engine.setParams(w); }
      const ev = me.round === rounds ? await engine.evaluate(tx, ty) : await engine.evaluate(px, py);
      me.test_acc = ev.acc; me.test_loss = ev.loss;
      report();
    }
    showMe();
  }
  if (!leaving) {
    me.state = 'done';
    status(`Done: ${me.round} rounds, test accuracy ${(100 * me.test_acc).toFixed(1)} % on ${test.n} test images.`);
    await report();
    if (kv) await kv.close();
  }
}

function showMe() {
  $('m-id').textContent = myID;
  $('m-rank').textContent = me.rank >= 0 ? `${me.rank} / ${me.workers}` : '–';
  $('m-round').textContent = String(me.round);
  $('m-loss').textContent = me.round ? me.loss.toFixed(3) : '–';
  $('m-acc').textContent = me.test_acc ? `${(100 * me.test_acc).toFixed(1)} %` : '–';
  $('m-rate').textContent = me.samples_per_sec ? me.samples_per_sec.toFixed(0) : '–';
  $('m-phases').textContent = phases(me.phases_ms) || '–';
}

// phases formats a peer's per-round costs: "pull 3 · upload 1 · …" (ms).
const PHASES = ['pull', 'upload', 'batch', 'grad', 'compute', 'readback', 'push'];
const phases = (p) => Object.entries(p || {}).sort(([a], [b]) => PHASES.indexOf(a) - PHASES.indexOf(b)).map(([k, v]) => `${k} ${v < 10 ? v.toFixed(1) : v.toFixed(0)}`).join(' · ');
const mb = (n) => (n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(2)} GB` : `${(n / (1 << 20)).toFixed(1)} MB`);
const esc = (s) => String(s ?? '').replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));
// showJob fills the job's cards from /api/peers' job (the relay's view)
// and the peers' reports.
function showJob(job, peers) {
  const live = peers.filter((p) => !p.gone && p.state !== 'done');
  const best = Math.max(0, ...peers.map((p) => p.test_acc || 0));
  const rate = live.reduce((s, p) => s + (p.state === 'training' ? p.samples_per_sec || 0 : 0), 0);
  // A peer's training mode (local steps, aggregation: the federated
  // settings) says more than the relay's job mode.
  const mode = (peers.find((p) => p.mode) || {}).mode || (job && job.mode) || '';
  if (job) {
    $('j-job').textContent = `${job.job}${mode ? ' · ' + mode : ''}${job.done ? ' · finished' : ''}`;
    $('j-round').textContent = job.rounds ? `${job.round} / ${job.rounds}` : String(job.round);
    $('j-workers').textContent = String(job.live_workers);
    // Per worker: over the workers that trained (the live ones are gone once the job finished).
    const trained = Math.max(job.live_workers, peers.filter((p) => p.round > 0).length);
    const perRound = job.round && trained ? (job.bytes_in + job.bytes_out) / job.round / trained : 0;
    $('j-traffic').textContent = `${mb(job.bytes_in)} in · ${mb(job.bytes_out)} out` + (perRound ? ` · ${(perRound / 1024).toFixed(0)} kB per worker per round` : '');
  } else {
    $('j-job').textContent = cfg ? cfg.job : '–';
    $('j-round').textContent = String(Math.max(0, ...peers.map((p) => p.job_round || p.round || 0)));
    $('j-workers').textContent = String(live.length);
  }
  $('j-acc').textContent = best ? `${(100 * best).toFixed(1)} %` : '–';
  $('j-rate').textContent = rate ? rate.toFixed(0) : '–';
}

async function refresh() {
  try {
    const resp = await fetch('/api/peers', { cache: 'no-store' });
    const { peers, job } = await resp.json();
    showJob(job, peers);
    const series = [];
    const rows = peers.map((p, i) => {
      const c = color(i);
      if (p.history.length) series.push({ color: c, points: p.history });
      const st = p.gone && p.state !== 'left' ? 'gone' : p.state;
      return `<tr class="${p.gone ? 'gone' : ''} ${p.id === myID ? 'me' : ''}"><td><i style="display:inline-block;width:10px;height:10px;background:${c};margin-right:6px"></i>${esc(p.id)}${p.id === myID ? ' (this tab)' : ''}</td>` +
        `<td>${esc(p.kind)}</td><td>${esc(p.backend)}</td><td><span class="state ${esc(st)}" title="${esc(p.message)}">${esc(st)}</span></td>` +
        `<td>${p.rank >= 0 ? p.rank : '–'}</td><td>${p.round}</td><td>${p.samples}</td><td>${p.round ? p.loss.toFixed(3) : '–'}</td>` +
        `<td>${p.test_acc ? (100 * p.test_acc).toFixed(1) + ' %' : '–'}</td><td>${p.samples_per_sec ? p.samples_per_sec.toFixed(0) : '–'}</td>` +
        `<td title="sent + received on its relay connection">${p.bytes ? mb(p.bytes) : '–'}</td>` +
        `<td class="ph">${esc(phases(p.phases_ms)) || '–'}</td></tr>`;
    });
    $('peers').innerHTML = rows.length ? rows.join('') : '<tr><td colspan="12">No peers yet.</td></tr>';
    $('legend').innerHTML = '<span><i style="background:#555"></i>test accuracy (left axis)</span><span><i style="background:repeating-linear-gradient(90deg,#555 0 4px,transparent 4px 7px)"></i>training loss (right axis)</span>';
    draw($('chart'), series, job ? job.round : 0);
    window.__dashboard = { job: job || null, series: series.map((s) => s.points.map((p) => p.round)), refreshes: window.__dashboard.refreshes + 1 };
  } catch (e) { /* retry on the next tick */ }
}

// selfTest runs the WebGPU kernels and the JavaScript CPU reference on the
// same seeded batch and compares the gradients (?selftest); the result is
// also left in window.__selftest for automated tests.
async function selfTest() {
  const { device, adapter } = await openGPU();
  const gpu = await GpuMLP.create(device, SHAPE, 256), cpu = new CpuMLP(SHAPE);
  const seed = Number(qs.get('seed')) || Date.now() % 1e9, n = rng(seed), ur = uniform(seed + 1);
  const p = initParams(seed);
  for (const k of ['b1', 'b2']) for (let i = 0; i < p[k].length; i++) p[k][i] = 0.1 * n();
  gpu.setParams(p); cpu.setParams(p);
  const out = { seed, adapter, batches: [] };
  for (const b of [1, 37, 64, 256]) {
    const x = new Float32Array(b * 784), y = new Uint8Array(b);
    for (let i = 0; i < x.length; i++) x[i] = Math.abs(n()) < 0.25 ? ur() : 0;
    for (let i = 0; i < b; i++) y[i] = Math.floor(ur() * 10);
    const gg = zeros(), gc = zeros();
    const rg = await gpu.grad(x, y, gg), rc = await cpu.grad(x, y, gc);
    const rel = {};
    for (const k of KEYS) {
      let d = 0, m = 1e-12;
      for (let i = 0; i < gc[k].length; i++) { d = Math.max(d, Math.abs(gg[k][i] - gc[k][i])); m = Math.max(m, Math.abs(gc[k][i])); }
      rel[k] = d / m;
    }
    out.batches.push({ batch: b, lossGPU: rg.loss, lossCPU: rc.loss, correctGPU: rg.correct, correctCPU: rc.correct, maxRelDiff: rel });
  }
  out.ok = out.batches.every((r) => Math.abs(r.lossGPU - r.lossCPU) < 1e-4 * Math.max(1, r.lossCPU) && r.correctGPU === r.correctCPU &&
    KEYS.every((k) => r.maxRelDiff[k] < 1e-3));
  window.__selftest = out;
  status(`selftest (seed ${seed}) on ${adapter}: ${out.ok ? 'GPU gradients match the CPU reference' : 'MISMATCH'}: ` + JSON.stringify(out.batches.map((r) => r.maxRelDiff)), out.ok ? '' : 'error');
}

(async () => {
  if (qs.has('selftest')) { try { await selfTest(); } catch (e) { window.__selftest = { ok: false, error: String(e) }; fail(e, 'selftest'); } return; }
  try {
    cfg = await (await fetch('/api/config', { cache: 'no-store' })).json();
    token = hash.get('token') || qs.get('token') || cfg.token || '';
  } catch (e) { fail(e, 'loading the job configuration'); return; }
  setInterval(refresh, 1000); refresh();
  if (watching) {
    // Read-only: no runtime, no store, no reports; the page polls
    // /api/peers once a second, nothing more.
    $('leave').hidden = true; $('join').hidden = false;
    status('Watching the job (read-only: this tab does not train). Use "Join the job with this tab" to train with it.');
    return;
  }
  $('me').hidden = false;
  showMe();
  setInterval(() => { if (!leaving && me.state !== 'done') report(); }, 2000);
  try { await train(); } catch (e) { if (!leaving) fail(e, 'training'); }
})();
