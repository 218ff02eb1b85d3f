// Softmax cross-entropy over rows of logits z[rows×n] with labels y[rows].
// Per row r: dz[r,j] = (softmax(z_r)_j - [j == y_r]) * scale   (scale = 1/batch
// for the gradient of the mean loss), stats[2r] = loss_r,
// stats[2r+1] = 1 if argmax(z_r) == y_r else 0.
struct P { rows: u32, n: u32, scale: f32, _p0: u32 };
@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<u32>;
@group(0) @binding(2) var<storage, read_write> dz: array<f32>;
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;
@group(0) @binding(4) var<uniform> p: P;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = gid.x + gid.y * nwg.x * 64u;
  if (r >= p.rows) { return; }
  let base = r * p.n;
  var mx = z[base];
  var arg = 0u;
  for (var j = 1u; j < p.n; j++) {
    let v = z[base + j];
    if (v > mx) { mx = v; arg = j; }
  }
  var sum = 0.0;
  for (var j = 0u; j < p.n; j++) { sum += exp(z[base + j] - mx); }
  let lbl = y[r];
  stats[2u * r] = log(sum) - (z[base + lbl] - mx);
  stats[2u * r + 1u] = select(0.0, 1.0, arg == lbl);
  let inv = 1.0 / sum;
  for (var j = 0u; j < p.n; j++) {
    var pj = exp(z[base + j] - mx) * inv;
    if (j == lbl) { pj -= 1.0; }
    dz[base + j] = pj * p.scale;
  }
}
