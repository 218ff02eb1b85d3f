// The MLP on WebGPU in the browser: the same WGSL kernels as native workers
// (fetched from /mlp/*.wgsl, served from package mnist, www/mnist/wgsl) and the same
// 9-dispatch step as www/mnist/gpu/gpu.go, with explicit layouts and 64-invocation
// workgroups (valid in compatibility mode).

const RO = 'read-only-storage', RW = 'storage', UNI = 'uniform';
const MM_BIAS = 1, MM_RELU = 2;

// openGPU returns {device, adapter} or throws with the reason there is none.
export async function openGPU() {
  if (!navigator.gpu) throw new Error('this browser has no WebGPU (navigator.gpu is missing)');
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error('WebGPU has no adapter');
  const device = await adapter.requestDevice();
  let name = '';
  try {
    const info = adapter.info || (adapter.requestAdapterInfo ? await adapter.requestAdapterInfo() : {});
    name = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ');
  } catch (e) { /* info is optional */ }
  return { device, adapter: name || 'unnamed adapter' };
}

export class GpuMLP {
  static async create(device, shape, maxBatch) {
    const g = new GpuMLP();
    g.dev = device; g.s = shape; g.maxBatch = maxBatch;
    device.pushErrorScope('validation');
    device.pushErrorScope('out-of-memory');
    g.mm = await g.#kernel('matmul', [RO, RO, RO, RW, UNI]);
    g.relu = await g.#kernel('relu', [RO, RO, RW, UNI]);
    g.xent = await g.#kernel('xent', [RO, RO, RW, RW, UNI]);
    g.col = await g.#kernel('colsum', [RO, RW, UNI]);
    const { In, Hidden: H, Out: O } = shape, B = maxBatch;
    const st = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
    const buf = (n, usage = st) => device.createBuffer({ size: Math.max(n, 1) * 4, usage });
    Object.assign(g, {
      w1: buf(In * H), b1: buf(H), w2: buf(H * O), b2: buf(O),
      gw1: buf(In * H), gb1: buf(H), gw2: buf(H * O), gb2: buf(O),
      x: buf(B * In), y: buf(B), a1: buf(B * H), z2: buf(B * O), dz2: buf(B * O),
      da1: buf(B * H), dz1: buf(B * H), stats: buf(2 * B), dummy: buf(4),
    });
    g.nParams = In * H + H + H * O + O;
    g.staging = buf(g.nParams + 2 * B, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
    const plan = [
      [g.mm, [g.x, g.w1, g.b1, g.a1]], [g.mm, [g.a1, g.w2, g.b2, g.z2]], [g.xent, [g.z2, g.y, g.dz2, g.stats]],
      [g.col, [g.dz2, g.gb2]], [g.mm, [g.dz2, g.w2, g.dummy, g.da1]], [g.relu, [g.a1, g.da1, g.dz1]],
      [g.col, [g.dz1, g.gb1]], [g.mm, [g.a1, g.dz2, g.dummy, g.gw2]], [g.mm, [g.x, g.dz1, g.dummy, g.gw1]],
    ];
    g.steps = plan.map(([k, bufs]) => {
      const uni = device.createBuffer({ size: 32, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
      const entries = [...bufs, uni].map((b, i) => ({ binding: i, resource: { buffer: b } }));
      return { k, uni, bg: device.createBindGroup({ layout: k.bgl, entries }) };
    });
    const oom = await device.popErrorScope();
    const val = await device.popErrorScope();
    if (oom || val) throw new Error('WebGPU setup failed: ' + (val || oom).message);
    return g;
  }

  async #kernel(name, kinds) {
    const resp = await fetch(`/mlp/${name}.wgsl`);
    if (!resp.ok) throw new Error(`kernel ${name}: HTTP ${resp.status}`);
    const mod = this.dev.createShaderModule({ label: name, code: await resp.text() });
    const info = mod.getCompilationInfo ? await mod.getCompilationInfo() : { messages: [] };
    const errs = info.messages.filter((m) => m.type === 'error');
    if (errs.length) throw new Error(`kernel ${name}: ${errs.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join('; ')}`);
    const bgl = this.dev.createBindGroupLayout({
      label: name,
      entries: kinds.map((type, i) => ({ binding: i, visibility: GPUShaderStage.COMPUTE, buffer: { type } })),
    });
    const pipe = this.dev.createComputePipeline({
      label: name,
      layout: this.dev.createPipelineLayout({ bindGroupLayouts: [bgl] }),
      compute: { module: mod, entryPoint: 'main' },
    });
    return { bgl, pipe };
  }

  setParams(p) {
    const q = this.dev.queue;
    q.writeBuffer(this.w1, 0, p.w1); q.writeBuffer(this.b1, 0, p.b1);
    q.writeBuffer(this.w2, 0, p.w2); q.writeBuffer(this.b2, 0, p.b2);
  }

  static #grid(n) {
    const wg = Math.max(1, Math.ceil(n / 64));
    return wg <= 65535 ? [wg, 1] : [65535, Math.ceil(wg / 65535)];
  }

  async #run(x, y, nSteps, g) {
    const { In, Hidden: H, Out: O } = this.s, b = y.length, q = this.dev.queue;
    if (b === 0 || b > this.maxBatch || x.length !== b * In) throw new Error(`bad batch: ${b} labels, ${x.length} inputs (max batch ${this.maxBatch})`);
    q.writeBuffer(this.x, 0, x);
    q.writeBuffer(this.y, 0, Uint32Array.from(y));
    const u = (...v) => { const a = new Uint32Array(8); a.set(v); return a; };
    const f = (x) => new Uint32Array(new Float32Array([x]).buffer)[0];
    const mm = (m, n, k, flags, saR, saC, sbR, sbC) => u(m, n, k, flags, saR, saC, sbR, sbC);
    const unis = [
      mm(b, H, In, MM_BIAS | MM_RELU, In, 1, H, 1), mm(b, O, H, MM_BIAS, H, 1, O, 1), u(b, O, f(1 / b)), u(b, O, f(1)),
      mm(b, H, O, 0, O, 1, 1, O), u(b * H, 1), u(b, H, f(1)), mm(H, O, b, 0, 1, H, O, 1), mm(In, H, b, 0, 1, In, H, 1),
    ];
    const c8 = (n) => Math.ceil(n / 8);
    const dims = [[c8(H), c8(b)], [c8(O), c8(b)], GpuMLP.#grid(b), [O, 1], [c8(H), c8(b)], GpuMLP.#grid(b * H), [H, 1], [c8(O), c8(H)], [c8(H), c8(In)]];
    for (let i = 0; i < nSteps; i++) q.writeBuffer(this.steps[i].uni, 0, unis[i]);
    const enc = this.dev.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (let i = 0; i < nSteps; i++) {
      const s = this.steps[i];
      pass.setPipeline(s.k.pipe); pass.setBindGroup(0, s.bg); pass.dispatchWorkgroups(dims[i][0], dims[i][1], 1);
    }
    pass.end();
    let off = 0;
    if (g) for (const [src, dst] of [[this.gw1, g.w1], [this.gb1, g.b1], [this.gw2, g.w2], [this.gb2, g.b2]]) {
      enc.copyBufferToBuffer(src, 0, this.staging, off, dst.length * 4); off += dst.length * 4;
    }
    const statsOff = off;
    enc.copyBufferToBuffer(this.stats, 0, this.staging, off, 8 * b); off += 8 * b;
    q.submit([enc.finish()]);
    // Waiting for the queue first splits the round's GPU time into the
    // kernels and the readback (map + copy out) for the dashboard.
    const t0 = performance.now();
    await q.onSubmittedWorkDone();
    const t1 = performance.now();
    await this.staging.mapAsync(GPUMapMode.READ, 0, off);
    const data = new Float32Array(this.staging.getMappedRange(0, off).slice(0));
    this.staging.unmap();
    this.timing = { compute: t1 - t0, readback: performance.now() - t1 };
    if (g) {
      let o = 0;
      for (const t of [g.w1, g.b1, g.w2, g.b2]) { t.set(data.subarray(o, o + t.length)); o += t.length; }
    }
    let loss = 0, correct = 0;
    for (let r = 0; r < b; r++) { loss += data[statsOff / 4 + 2 * r]; if (data[statsOff / 4 + 2 * r + 1] > 0.5) correct++; }
    return { loss: loss / b, correct };
  }

  grad(x, y, g) { return this.#run(x, y, 9, g); }

  async evaluate(x, y) {
    const n = y.length, In = this.s.In;
    let loss = 0, correct = 0;
    for (let lo = 0; lo < n; lo += this.maxBatch) {
      const hi = Math.min(lo + this.maxBatch, n);
      const r = await this.#run(x.subarray(lo * In, hi * In), y.subarray(lo, hi), 3, null);
      loss += r.loss * (hi - lo); correct += r.correct;
    }
    return { loss: loss / n, acc: correct / n };
  }
}
