// Shared by the browser test pages: the seeded generator that Go mirrors
// (tests/browser_test.go brRand), GPU buffer helpers, result posting.

// mulberry32: the same 32-bit sequence as brMulberry in Go.
export function mulberry32(a) {
  return function () {
    a = (a + 0x6D2B79F5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

// rand(seed, n): n float32 values in [-1, 1), exact multiples of 2^-23.
export function rand(seed, n) {
  const next = mulberry32(seed >>> 0);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (next() >>> 8) / 16777216 * 2 - 1;
  return out;
}

const STORAGE_RW = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

export function gpuBuffer(device, data, n) {
  const b = device.createBuffer({size: Math.ceil((n ?? data.length) * 4 / 16) * 16, usage: STORAGE_RW()});
  if (data) device.queue.writeBuffer(b, 0, data);
  return b;
}

export async function readGPU(device, buf, n) {
  const st = device.createBuffer({size: n * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(buf, 0, st, 0, n * 4);
  device.queue.submit([enc.finish()]);
  await st.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(st.getMappedRange().slice(0));
  st.unmap();
  st.destroy();
  return out;
}

export function log(msg) {
  console.log(msg);
  const el = document.getElementById('log');
  if (el) el.textContent += msg + '\n';
}

// post hands the result to the Go test, which polls window.__webkvResult.
export function post(obj) {
  window.__webkvResult = JSON.stringify(obj);
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
