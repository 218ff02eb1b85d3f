// Column sums of x[rows×n] (row-major): out[j] = scale * Σ_r x[r,j], the bias
// gradient of a layer. One workgroup per column: 64 invocations stride over
// the rows, then a tree reduction in workgroup memory.
struct P { rows: u32, n: u32, scale: f32, _p0: u32 };
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> o: array<f32>;
@group(0) @binding(2) var<uniform> p: P;

var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let j = wid.x + wid.y * nwg.x;   // column; uniform across the workgroup
  var acc = 0.0;
  if (j < p.n) {
    for (var r = li; r < p.rows; r += 64u) { acc += x[r * p.n + j]; }
  }
  part[li] = acc;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) {
    if (li < s) { part[li] += part[li + s]; }
    workgroupBarrier();
  }
  if (li == 0u && j < p.n) { o[j] = part[0] * p.scale; }
}
