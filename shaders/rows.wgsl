// rows.wgsl: row-sparse gather and scatter (compute.RowMover), bit-exact
// with the CPU reference loops (kvcore/compute/rows.go). One invocation per
// word of a window of the compact buffer; the dense buffer is bound in
// windows too, and a row's words outside the bound dense window are left
// alone (the Go side zeroes a gather's output first, so words outside the
// whole dense buffer read 0).
//
//	P.aux  width of a row          P.aux2 shift of this dense window
//	P.aux3 words of the window     P.f2   (bits) first compact word bound
//
// Row r covers dense words r*width - shift .. (r+1)*width - shift - 1; all
// in u32 (a key has fewer than 2^32 words).
@group(0) @binding(1) var<storage, read> rows: array<u32>;
{{- if .Scatter}}
@group(0) @binding(2) var<storage, read> compact: array<f32>;
@group(0) @binding(3) var<storage, read_write> dense: array<f32>;
{{- else}}
@group(0) @binding(2) var<storage, read> dense: array<f32>;
@group(0) @binding(3) var<storage, read_write> compact: array<f32>;
{{- end}}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
{{- template "each" .}}
    let w = P.aux;
    let ci = bitcast<u32>(P.f2) + i;
    let g = rows[ci / w] * w + ci % w;
    if (g >= P.aux2 && g - P.aux2 < P.aux3) {
  {{- if .Scatter}}
    {{- if .Add}}
      dense[g - P.aux2] = dense[g - P.aux2] + compact[i];
    {{- else}}
      dense[g - P.aux2] = compact[i];
    {{- end}}
  {{- else}}
      compact[i] = dense[g - P.aux2];
  {{- end}}
    }
  }
}
