// fill.wgsl: dst[i] = P.scale. (CommandEncoder.ClearBuffer does not exist
// on GOOS=js in cogentcore/webgpu v0.23.0, and fill takes any value.)
@group(0) @binding(1) var<storage, read_write> dst: array<V>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
{{- template "each" .}}
    dst[i] = V(P.scale);
  }
}
