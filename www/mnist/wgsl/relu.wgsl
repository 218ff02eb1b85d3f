// Element-wise ReLU and its gradient over len values.
// mode 0: out[i] = max(x[i], 0)                  (x: pre-activation)
// mode 1: out[i] = x[i] > 0 ? g[i] : 0           (x: activation or pre-activation, g: upstream grad)
struct P { len: u32, mode: u32, _p0: u32, _p1: u32 };
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> o: array<f32>;
@group(0) @binding(3) var<uniform> p: P;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 64u; // 1D or 2D dispatch
  if (i >= p.len) { return; }
  if (p.mode == 0u) {
    o[i] = max(x[i], 0.0);
  } else {
    o[i] = select(0.0, g[i], x[i] > 0.0);
  }
}
