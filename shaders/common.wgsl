// common.wgsl is the prelude of every webkv kernel (a Go text/template; the
// Go side chooses V). It declares the uniform block, which binding 0 carries
// at a dynamic offset so one bind group per buffer set serves every dispatch
// of a step, and the flat index of a 2D dispatch: past 65535 workgroups the
// Go side folds the grid into y rows, and every kernel bound-checks against
// P.n.

// V is the element type: vec4<f32> when every buffer of a dispatch is padded
// to a multiple of 4 words (webkv's own allocations are), else f32.
alias V = {{.V}};

const WG: u32 = 64u;

// StepParams mirrors kvcore.StepParams word for word (24 words, no padding).
struct StepParams {
  lr: f32, wd: f32, rescale_grad: f32, clip_gradient: f32,
  momentum: f32, beta1: f32, beta2: f32, epsilon: f32,
  gamma1: f32, gamma2: f32, rho: f32, lamda1: f32,
  beta: f32, wd_lh: f32, lower_bound: f32, upper_bound: f32,
  clip_weights: f32, eta: f32, coef1: f32, coef2: f32,
  t: f32, flags: u32, pad0: u32, pad1: u32,
}

// Params mirrors the Go struct params in backend.go (32 words).
struct Params {
  n: u32,     // elements of type V (or packed words) this dispatch covers
  aux: u32,   // kernel-specific (value count, partials base)
  aux2: u32,
  aux3: u32,
  scale: f32, // reduce scale; fill value
  threshold: f32,
  f2: f32,
  f3: f32,
  sp: StepParams,
}

@group(0) @binding(0) var<uniform> P: Params;

fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.y * nwg.x + wid.x) * WG + lid;
}

// grid_stride is the step of the grid-stride loops, which only run when
// Options.MaxWorkgroups caps the grid: invocations then walk the array in
// steps of the whole grid. By default the grid has one invocation per
// element (see "each" below).
fn grid_stride(nwg: vec3<u32>) -> u32 {
  return nwg.x * nwg.y * WG;
}
{{- /* each opens the element loop of a kernel as a block over index i; the
kernel closes it with one brace. When the grid covers the array (.Loop
false, the default) it is one element per invocation with an early return:
on SwiftShader a grid-stride loop whose bound is a uniform load ran Adam
1.5-2x slower than this form, as the compiler cannot see that the loop
runs once. With a workgroup cap (.Loop true) it is the grid-stride loop.
The bound and the stride are read once, before the loop. */}}
{{- define "each"}}
  let n = P.n;
  let i0 = flat_index(wid, nwg, lid);
{{- if .Loop}}
  let stride = grid_stride(nwg);
  for (var i = i0; i < n; i = i + stride) {
{{- else}}
  if (i0 >= n) {
    return;
  }
  {
    let i = i0;
{{- end}}
{{- end}}
