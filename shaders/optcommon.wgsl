{{/* optcommon.wgsl holds only definitions shared by the optimizer kernels:
the bindings (weight, grad, then the kernel's states in kvcore's order) and
the entry point's head. Each opt_*.wgsl is one fused kernel whose body is
the CPU reference loop of kvcore/optimizer_kernels.go, operation for
operation, so results differ from the CPU only where the GPU compiler fuses
a multiply-add. */}}
{{- define "optbind"}}
@group(0) @binding(1) var<storage, read_write> w: array<V>;
{{- template "gradbind" .}}
{{- range .States}}
@group(0) @binding({{.B}}) var<storage, read_write> s{{.I}}: array<V>;
{{- end}}

// clipv is mshadow_op::clip: c where x > c, -c where x < -c, else x (NaN
// passes through).
fn clipv(x: V, c: f32) -> V {
  return select(select(x, V(-c), x < V(-c)), V(c), x > V(c));
}

// signv is (x > 0) - (x < 0): 0 for zero and NaN.
fn signv(x: V) -> V {
  return select(V(0.0), V(1.0), x > V(0.0)) - select(V(0.0), V(1.0), x < V(0.0));
}

// rescaled is clip(rescale_grad * grad) for the kernels that keep weight
// decay out of the clip.
fn rescaled(gi: V) -> V {
  var gr = P.sp.rescale_grad * gi;
  if (P.sp.clip_gradient >= 0.0) {
    gr = clipv(gr, P.sp.clip_gradient);
  }
  return gr;
}
{{- end}}

{{- /* gradbind declares the gradient: one buffer g, or with .Ins (the
fused ReduceStep) the inputs whose sum times P.scale is the gradient, added
left to right as Reduce does, so the gradient has the bits Reduce would
have written. */}}
{{- define "gradbind"}}
{{- if .Ins}}
{{- range .Ins}}
@group(0) @binding({{.B}}) var<storage, read> in{{.I}}: array<V>;
{{- end}}

fn grad(i: u32) -> V {
  var a: V = in0[i];
{{- range .InsRest}}
  a = a + in{{.I}}[i];
{{- end}}
  return a{{if .Scaled}} * P.scale{{end}};
}
{{- else}}
@group(0) @binding(2) var<storage, read> g: array<V>;

fn grad(i: u32) -> V { return g[i]; }
{{- end}}
{{- end}}

{{- /* opthead opens main and its element loop ("each"); each kernel closes both.
Kernels read hyper-parameters as P.sp.x where they use them: a copy of the
whole block (let sp = P.sp) made SwiftShader's Adam ~5% slower. */}}
{{- define "opthead"}}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
{{- template "each" .}}
{{- end}}
