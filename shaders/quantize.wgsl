// quantize.wgsl: MXNet 2bit/1bit gradient compression with error feedback,
// bit-exact with kvcore.Quantize2Bit/Quantize1Bit. One invocation builds one
// packed word from {{.Per}} consecutive values: r += g, compare, subtract
// what the code stands for, in float32 and in MXNet's order. Values past
// P.aux (the value count of this dispatch) are padding: no code, residual
// untouched, bits 0.
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> r: array<f32>;
@group(0) @binding(3) var<storage, read_write> outw: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  for (var w = flat_index(wid, nwg, lid); w < P.n; w = w + grid_stride(nwg)) {
    let nvals = P.aux;
    let t = P.threshold;
  {{- if eq .Per 16}}
    let pos = t;
    let neg = -1.0 * t;
    var word = 0u;
    for (var k = 0u; k < 16u; k = k + 1u) {
      let j = w * 16u + k;
      if (j >= nvals) { break; }
      var v = r[j] + g[j];
      var code = 0u;
      if (v >= pos) {
        code = 3u;
        v = v - pos;
      } else if (v <= neg) {
        code = 2u;
        v = v - neg;
      }
      r[j] = v;
      word = word | (code << (8u * (k / 4u) + 6u - 2u * (k % 4u)));
    }
  {{- else}}
    var word = 0u;
    for (var k = 0u; k < 32u; k = k + 1u) {
      let j = w * 32u + k;
      if (j >= nvals) { break; }
      var v = r[j] + g[j];
      if (v > t) {
        word = word | (1u << (8u * (k / 8u) + 7u - k % 8u));
        v = v - 1.0;
      } else {
        v = v + 1.0;
      }
      r[j] = v;
    }
  {{- end}}
    outw[w] = word;
  }
}
