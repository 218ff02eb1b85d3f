// reduce.wgsl: dst = scale * (((s0 + s1) + s2) + …), left to right like the
// CPU reference, over up to 7 inputs per pass (8 storage bindings is the
// WebGPU default per stage). More inputs run as several passes: the first
// writes the partial sum into dst (Acc false), the next ones continue from it
// (Acc true: dst is the leftmost operand), so the order of additions is the
// CPU's. Intermediate passes use scale 1, which is exact. With scale 1
// (.Scaled false) the multiply is left out: the same values, ~6% less time
// on SwiftShader.
{{range .Srcs}}
@group(0) @binding({{.B}}) var<storage, read> s{{.I}}: array<V>;{{end}}
@group(0) @binding({{.DstB}}) var<storage, read_write> dst: array<V>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
{{- template "each" .}}
  {{- if .Acc}}
    var a: V = dst[i];{{range .Srcs}}
    a = a + s{{.I}}[i];{{end}}
  {{- else}}
    var a: V = s0[i];{{range .Rest}}
    a = a + s{{.I}}[i];{{end}}
  {{- end}}
    dst[i] = a{{if .Scaled}} * P.scale{{end}};
  }
}
