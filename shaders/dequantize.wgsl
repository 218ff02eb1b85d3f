// dequantize.wgsl: unpack MXNet 2bit codes (11 -> +t, 10 -> -t, else 0) or
// 1bit codes (1 -> +1, 0 -> -1), bit-exact with kvcore.Dequantize2Bit and
// Dequantize1Bit. One invocation per value.
@group(0) @binding(1) var<storage, read> inw: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
{{- template "each" .}}
    let j = i;
  {{- if eq .Per 16}}
    let k = j % 16u;
    let code = (inw[j / 16u] >> (8u * (k / 4u) + 6u - 2u * (k % 4u))) & 3u;
    var v = 0.0;
    if (code == 3u) {
      v = P.threshold;
    } else if (code == 2u) {
      v = bitcast<f32>(bitcast<u32>(P.threshold) ^ 0x80000000u); // -t without arithmetic (subnormal t)
    }
    dst[j] = v;
  {{- else}}
    let k = j % 32u;
    let bit = (inw[j / 32u] >> (8u * (k / 8u) + 7u - k % 8u)) & 1u;
    dst[j] = select(-1.0, 1.0, bit == 1u);
  {{- end}}
  }
}
