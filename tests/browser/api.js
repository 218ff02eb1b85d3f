// Runs the step script the Go test serves at /script.json through every
// call of webkv's JS API and posts the transcript; the test runs the same
// steps natively on kvcore and compares. See tests/browser_test.go.
import * as webkv from '/webkv/webkv.js';
import {rand, gpuBuffer, readGPU, log, post, hex} from './common.js';

async function main() {
  const script = await (await fetch('/script.json')).json();
  const gpu = await webkv.gpu();
  const device = gpu.available ? gpu.device : null;
  log(`gpu: ${JSON.stringify({available: gpu.available, adapter: gpu.adapter, reason: gpu.reason, limits: gpu.limits})}`);
  const out = {gpu: {available: gpu.available, adapter: gpu.adapter ?? '', backend: gpu.backend ?? '', reason: gpu.reason ?? ''}, steps: []};
  let kv = null;
  let saved = null;
  const events = [];

  // value builds the argument of one step: a Float32Array or GPUBuffer per
  // seed, a list when there are several (or list is set), or a raw bad value.
  const value = (v) => {
    if (v.bad !== undefined) return v.bad;
    if (v.destroyed) {
      const b = gpuBuffer(device, rand(v.seeds[0], v.n));
      b.destroy();
      return b;
    }
    const vals = v.seeds.map((s, i) => {
      const d = rand(s, v.n);
      return v.gpu && v.gpu[i] ? gpuBuffer(device, d) : d;
    });
    return vals.length === 1 && !v.list ? vals[0] : vals;
  };
  const outArg = (o, n) => {
    switch (o) {
      case 'f32': return new Float32Array(n);
      case 'f32bad': return new Float32Array(n + 1);
      case 'gpu': return gpuBuffer(device, null, n);
      case 'gpusmall': return device.createBuffer({size: 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST});
      case 'gpunostorage': return device.createBuffer({size: n * 4, usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST});
      default: return undefined;
    }
  };
  const result = async (r, o, n) => {
    if (typeof GPUBuffer !== 'undefined' && r instanceof GPUBuffer) return Array.from(await readGPU(device, r, n));
    if (r instanceof Float32Array) {
      if (o === 'f32' && r.length !== n) throw new Error('pull returned a different array');
      return Array.from(r);
    }
    throw new Error(`pull resolved to ${r}`);
  };

  for (const st of script.steps) {
    if (st.needsGPU && !device) { out.steps.push({skipped: true}); continue; }
    const rec = {ok: true};
    try {
      switch (st.op) {
        case 'create':
          kv = null;
          kv = await webkv.create(st.type, st.opts ?? {});
          kv.on('connection', (d) => events.push(['connection', d.state]));
          kv.on('membership', (d) => events.push(['membership', `${d.rank}/${d.numWorkers}`]));
          rec.info = {type: kv.type, rank: kv.rank, numWorkers: kv.numWorkers, backend: kv.backend, fallback: kv.fallback};
          break;
        case 'init': await kv.init(st.key, value(st.val), st.shape); break;
        case 'push': await kv.push(st.key, value(st.val)); break;
        case 'pull': {
          const o = outArg(st.out, st.n);
          const r = await kv.pull(st.key, o);
          if (o !== undefined && r !== o) throw new Error('pull did not resolve to its output');
          rec.values = await result(r, st.out, st.n);
          break;
        }
        case 'pushPull': {
          const o = outArg(st.out, st.n);
          const r = await kv.pushPull(st.key, value(st.val), o);
          rec.values = await result(r, st.out, st.n);
          break;
        }
        case 'burst': {
          // init, push, pull issued without awaiting: they must run in order.
          const [, , r] = await Promise.all([
            kv.init(st.key, rand(st.val.seeds[0], st.val.n), st.shape),
            kv.push(st.key, rand(st.val.seeds[1], st.val.n)),
            kv.pull(st.key),
          ]);
          rec.values = Array.from(r);
          break;
        }
        case 'pushList': await kv.push(st.keys, st.vals.map(value), st.prio); break;
        case 'pullList': {
          const r = await kv.pull(st.keys, st.outF32 ? st.ns.map((n) => new Float32Array(n)) : undefined, st.prio);
          if (!Array.isArray(r) || r.length !== st.keys.length) throw new Error('pull of a key list did not resolve to an array');
          rec.values = r.flatMap((x) => Array.from(x));
          break;
        }
        case 'pushPullList': {
          const r = await kv.pushPull(st.keys, st.vals.map(value), undefined, st.prio);
          rec.values = r.flatMap((x) => Array.from(x));
          break;
        }
        case 'setOptimizer': await kv.setOptimizer(st.spec); break;
        case 'setGradientCompression': await kv.setGradientCompression(st.spec); break;
        case 'barrier': await kv.barrier(); break;
        case 'waitAll': await kv.waitAll(); break;
        case 'info': rec.info = {type: kv.type, rank: kv.rank, numWorkers: kv.numWorkers}; break;
        case 'save': {
          const b = await kv.saveOptimizerStates(st.dump);
          if (!(b instanceof Uint8Array)) throw new Error('saveOptimizerStates did not resolve to a Uint8Array');
          saved = b;
          rec.bytes = b.length;
          rec.hex = hex(b);
          break;
        }
        case 'load': await kv.loadOptimizerStates(st.garbage ? new Uint8Array([1, 2, 3, 4, 5]) : saved); break;
        case 'close': await kv.close(); break;
        default: throw new Error(`unknown step ${st.op}`);
      }
    } catch (e) {
      rec.ok = false;
      rec.message = String(e && e.message);
      rec.code = e && e.code ? e.code : '';
      rec.isError = e instanceof Error;
    }
    log(`${st.op} ${JSON.stringify(st.key ?? st.type ?? '')}: ${rec.ok ? 'ok' : rec.code + ' ' + rec.message}`);
    out.steps.push(rec);
  }
  out.events = events;
  return out;
}

main().then(post, (e) => post({fatal: String(e && e.stack || e)}));
