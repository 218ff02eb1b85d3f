// The MLP's CPU reference in JavaScript: the same arithmetic as
// package mnist's Grad and Evaluate (www/mnist/model.go), for tabs without WebGPU.

export class CpuMLP {
  constructor(shape) {
    this.s = shape;
    this.p = null;
    this.name = 'cpu (JavaScript)';
  }
  setParams(p) { this.p = p; }

  // forward fills a1 (b×H, after ReLU) and z2 (b×O) for rows [0,b) of x.
  #forward(x, b) {
    const { In, Hidden: H, Out: O } = this.s, p = this.p;
    const a1 = new Float32Array(b * H), z2 = new Float32Array(b * O);
    for (let r = 0; r < b; r++) {
      const h = a1.subarray(r * H, (r + 1) * H);
      h.set(p.b1);
      for (let i = 0; i < In; i++) {
        const xv = x[r * In + i];
        if (xv === 0) continue;
        const off = i * H;
        for (let j = 0; j < H; j++) h[j] += xv * p.w1[off + j];
      }
      for (let j = 0; j < H; j++) if (h[j] < 0) h[j] = 0;
      const z = z2.subarray(r * O, (r + 1) * O);
      z.set(p.b2);
      for (let i = 0; i < H; i++) {
        const hv = h[i];
        if (hv === 0) continue;
        for (let j = 0; j < O; j++) z[j] += hv * p.w2[i * O + j];
      }
    }
    return { a1, z2 };
  }

  static #xent(z, y, b, dz) {
    let mx = z[0], arg = 0;
    for (let j = 1; j < z.length; j++) if (z[j] > mx) { mx = z[j]; arg = j; }
    let sum = 0;
    for (let j = 0; j < z.length; j++) sum += Math.exp(z[j] - mx);
    const loss = Math.log(sum) - (z[y] - mx);
    if (dz) for (let j = 0; j < z.length; j++) dz[j] = (Math.exp(z[j] - mx) / sum - (j === y ? 1 : 0)) / b;
    return { loss, ok: arg === y };
  }

  async grad(x, y, g) {
    const { In, Hidden: H, Out: O } = this.s, p = this.p, b = y.length;
    const { a1, z2 } = this.#forward(x, b);
    const dz2 = new Float32Array(b * O), dz1 = new Float32Array(b * H);
    let loss = 0, correct = 0;
    for (let r = 0; r < b; r++) {
      const res = CpuMLP.#xent(z2.subarray(r * O, (r + 1) * O), y[r], b, dz2.subarray(r * O, (r + 1) * O));
      loss += res.loss; if (res.ok) correct++;
    }
    g.w1.fill(0); g.b1.fill(0); g.w2.fill(0); g.b2.fill(0);
    for (let r = 0; r < b; r++) {
      for (let j = 0; j < O; j++) g.b2[j] += dz2[r * O + j];
      for (let i = 0; i < H; i++) {
        const hv = a1[r * H + i];
        let acc = 0;
        for (let j = 0; j < O; j++) acc += dz2[r * O + j] * p.w2[i * O + j];
        if (hv > 0) {
          dz1[r * H + i] = acc;
          for (let j = 0; j < O; j++) g.w2[i * O + j] += hv * dz2[r * O + j];
        }
      }
      for (let j = 0; j < H; j++) g.b1[j] += dz1[r * H + j];
      for (let i = 0; i < In; i++) {
        const xv = x[r * In + i];
        if (xv === 0) continue;
        const off = i * H;
        for (let j = 0; j < H; j++) g.w1[off + j] += xv * dz1[r * H + j];
      }
    }
    return { loss: loss / b, correct };
  }

  async evaluate(x, y) {
    const O = this.s.Out, n = y.length, chunk = 256;
    let loss = 0, correct = 0;
    for (let lo = 0; lo < n; lo += chunk) {
      const hi = Math.min(lo + chunk, n);
      const { z2 } = this.#forward(x.subarray(lo * this.s.In, hi * this.s.In), hi - lo);
      for (let r = 0; r < hi - lo; r++) {
        const res = CpuMLP.#xent(z2.subarray(r * O, (r + 1) * O), y[lo + r], 1, null);
        loss += res.loss; if (res.ok) correct++;
      }
    }
    return { loss: loss / n, acc: correct / n };
  }
}
