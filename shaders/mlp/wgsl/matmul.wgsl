// C[m×n] = A[m×k] · B[k×n] (+ bias[n]) (then ReLU), one output per invocation,
// 8×8 tiles staged in workgroup memory. A and B are read through strides, so
// the same kernel computes Aᵀ·B and A·Bᵀ without a transpose pass:
// A(i,l) = a[i*sa_r + l*sa_c], B(l,j) = b[l*sb_r + j*sb_c]. C is row-major.
struct P {
  m: u32, n: u32, k: u32, flags: u32,          // flags: 1 add bias, 2 ReLU
  sa_r: u32, sa_c: u32, sb_r: u32, sb_c: u32,
};
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<uniform> p: P;

var<workgroup> ta: array<array<f32, 8>, 8>; // [row][l]
var<workgroup> tb: array<array<f32, 8>, 8>; // [l][col]

@compute @workgroup_size(8, 8)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let row = wid.y * 8u + lid.y;
  let col = wid.x * 8u + lid.x;
  var acc = 0.0;
  let tiles = (p.k + 7u) / 8u;
  for (var t = 0u; t < tiles; t++) {
    let la = t * 8u + lid.x;
    var va = 0.0;
    if (row < p.m && la < p.k) { va = a[row * p.sa_r + la * p.sa_c]; }
    ta[lid.y][lid.x] = va;
    let lb = t * 8u + lid.y;
    var vb = 0.0;
    if (lb < p.k && col < p.n) { vb = b[lb * p.sb_r + col * p.sb_c]; }
    tb[lid.y][lid.x] = vb;
    workgroupBarrier();
    for (var i = 0u; i < 8u; i++) { acc += ta[lid.y][i] * tb[i][lid.x]; }
    workgroupBarrier();
  }
  if (row < p.m && col < p.n) {
    if ((p.flags & 1u) != 0u) { acc += bias[col]; }
    if ((p.flags & 2u) != 0u) { acc = max(acc, 0.0); }
    c[row * p.n + col] = acc;
  }
}
