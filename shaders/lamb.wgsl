// lamb.wgsl: LAMB (lambStep in kvcore) in three dispatches, selected by
// .Phase. The scratch buffer red holds lr' at red[0] and two partial sums
// per workgroup of phase 1 (||w||², ||u||²) from red[4 + 2*P.aux2] on.
//   1: update mean (s0) and var (s1), sum w*w and u*u per workgroup;
//   2: one workgroup sums the partials (P.aux of them), applies the bounds
//      and writes lr' = lr*r1/r2 (lr if either norm is 0);
//   3: w -= lr' * u, with u recomputed from the updated moments and the
//      unchanged weight (the same float32 operations: no scratch array).
// The norms are float32 sums in a different order from the CPU's float64
// ones; the difference only scales the step by a factor within ~1e-6 of 1.
{{- if eq .Phase 2}}
@group(0) @binding(1) var<storage, read_write> red: array<f32>;

var<workgroup> sw: array<f32, 64>;
var<workgroup> su: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32) {
  var a = 0.0;
  var b = 0.0;
  for (var j = lid; j < P.aux; j = j + 64u) {
    a = a + red[4u + 2u * j];
    b = b + red[4u + 2u * j + 1u];
  }
  sw[lid] = a;
  su[lid] = b;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      sw[lid] = sw[lid] + sw[lid + s];
      su[lid] = su[lid] + su[lid + s];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let sp = P.sp;
    var r1 = sqrt(sw[0]);
    let r2 = sqrt(su[0]);
    if ((sp.flags & 8u) != 0u) {
      if (sp.lower_bound >= 0.0) {
        r1 = max(r1, sp.lower_bound);
      }
      if (sp.upper_bound >= 0.0) {
        r1 = min(r1, sp.upper_bound);
      }
    }
    var lr = sp.lr;
    if (r1 != 0.0 && r2 != 0.0) {
      lr = lr * r1 / r2;
    }
    red[0] = lr;
  }
}
{{- else}}
@group(0) @binding(1) var<storage, read_write> w: array<V>;
{{- if eq .Phase 1}}
{{- template "gradbind" .}}
@group(0) @binding({{.SB}}) var<storage, read_write> s0: array<V>;
@group(0) @binding({{.SB1}}) var<storage, read_write> s1: array<V>;
@group(0) @binding({{.SB2}}) var<storage, read_write> red: array<f32>;

var<workgroup> sw: array<f32, 64>;
var<workgroup> su: array<f32, 64>;
{{- else}}
@group(0) @binding(2) var<storage, read> s0: array<V>;
@group(0) @binding(3) var<storage, read> s1: array<V>;
@group(0) @binding(4) var<storage, read> red: array<f32>;
{{- end}}

fn lamb_u(m: V, v: V, wi: V) -> V {
  let sp = P.sp;
  if ((sp.flags & 2u) != 0u) {
    return (m / sp.coef1) / (sqrt(v / sp.coef2) + sp.epsilon) + sp.wd * wi;
  }
  return m / (sqrt(v) + sp.epsilon) + sp.wd * wi;
}

fn hsum(x: V) -> f32 {
{{- if .Vec4}}
  return (x.x + x.y) + (x.z + x.w);
{{- else}}
  return x;
{{- end}}
}

// valid masks the words of element i that lie before P.aux (the piece's
// word count): the vec4 variant's last element may reach into padding.
fn valid(i: u32) -> V {
{{- if .Vec4}}
  let b = i * 4u;
  return select(V(0.0), V(1.0), vec4<u32>(b, b + 1u, b + 2u, b + 3u) < vec4<u32>(P.aux));
{{- else}}
  return select(0.0, 1.0, i < P.aux);
{{- end}}
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
{{- if eq .Phase 1}}
  // The element block is uniform per workgroup up to the barriers below.
  var a = 0.0;
  var b = 0.0;
  let sp = P.sp;
{{- if .Loop}}
  for (var i = flat_index(wid, nwg, lid); i < P.n; i = i + grid_stride(nwg)) {
{{- else}}
  let i = flat_index(wid, nwg, lid);
  if (i < P.n) { // no early return: the barriers below need every invocation
{{- end}}
    let gr = rescaled(grad(i));
    let m = sp.beta1 * s0[i] + (1.0 - sp.beta1) * gr;
    let v = sp.beta2 * s1[i] + (1.0 - sp.beta2) * gr * gr;
    s0[i] = m;
    s1[i] = v;
    let wi = w[i];
    let u = lamb_u(m, v, wi);
    let k = valid(i) != V(0.0);
    a = a + hsum(select(V(0.0), wi * wi, k));
    b = b + hsum(select(V(0.0), u * u, k));
  }
  sw[lid] = a;
  su[lid] = b;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      sw[lid] = sw[lid] + sw[lid + s];
      su[lid] = su[lid] + su[lid + s];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let p = 4u + 2u * (P.aux2 + wid.y * nwg.x + wid.x);
    red[p] = sw[0];
    red[p + 1u] = su[0];
  }
{{- else}}
{{- template "each" .}}
    w[i] = w[i] - red[0] * lamb_u(s0[i], s1[i], w[i]);
  }
{{- end}}
}

// rescaled is clip(rescale_grad * grad), as in optcommon.wgsl.
fn rescaled(gi: V) -> V {
  var gr = P.sp.rescale_grad * gi;
  if (P.sp.clip_gradient >= 0.0) {
    gr = select(select(gr, V(-P.sp.clip_gradient), gr < V(-P.sp.clip_gradient)),
                V(P.sp.clip_gradient), gr > V(P.sp.clip_gradient));
  }
  return gr;
}
{{- end}}
