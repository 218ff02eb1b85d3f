// C[m×n] = A[m×k] · B[k×n] (+ bias[n]) (then ReLU), one output per invocation.
// A and B are read through strides, so the same kernel computes Aᵀ·B and
// A·Bᵀ without a transpose pass: A(i,l) = a[i*sa_r + l*sa_c],
// B(l,j) = b[l*sb_r + j*sb_c]. C is row-major.
//
// Why no workgroup-memory tiling: on CPU adapters (lavapipe, SwiftShader),
// which the demo must run on, an 8×8-tiled version with two barriers per
// tile made a training step 7× slower (363 vs 50 ms on lavapipe); 4 outputs
// per invocation gained nothing measurable. At these sizes (784×128) a real
// GPU's caches serve the repeated loads.
struct P {
  m: u32, n: u32, k: u32, flags: u32,          // flags: 1 add bias, 2 ReLU
  sa_r: u32, sa_c: u32, sb_r: u32, sb_c: u32,
};
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<uniform> p: P;

@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row = gid.y;
  let col = gid.x;
  if (row >= p.m || col >= p.n) { return; }
  var acc = 0.0;
  var ia = row * p.sa_r;
  var ib = col * p.sb_c;
  for (var l = 0u; l < p.k; l++) {
    acc += a[ia] * b[ib];
    ia += p.sa_c;
    ib += p.sb_r;
  }
  if ((p.flags & 1u) != 0u) { acc += bias[col]; }
  if ((p.flags & 2u) != 0u) { acc = max(acc, 0.0); }
  c[row * p.n + col] = acc;
}
