// A page without WebGPU: 'device' stores fall back to the CPU and say why;
// allowCPUFallback: false rejects. Posts what it saw for tests/browser_test.go.
import * as webkv from '/webkv/webkv.js';
import {log, post} from './common.js';

async function main() {
  const out = {};
  out.gpu = await webkv.gpu();
  delete out.gpu.device;
  const kv = await webkv.create('device');
  out.backend = kv.backend;
  out.fallback = kv.fallback;
  await kv.init('w', new Float32Array([1, 2, 3, 4]), [2, 2]);
  await kv.push('w', [new Float32Array([1, 1, 1, 1]), new Float32Array([0.5, 0.5, 0.5, 0.5])]);
  out.pulled = Array.from(await kv.pull('w'));
  await kv.close();
  try {
    await webkv.create('device', {allowCPUFallback: false});
    out.strict = 'resolved';
  } catch (e) {
    out.strict = `${e.code}: ${e.message}`;
  }
  log(JSON.stringify(out));
  return out;
}

main().then(post, (e) => post({fatal: String(e && e.stack || e)}));
