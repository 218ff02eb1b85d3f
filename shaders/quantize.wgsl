// quantize.wgsl: MXNet 2bit/1bit gradient compression with error feedback,
// bit-exact with kvcore.Quantize2Bit/Quantize1Bit. One invocation builds one
// packed word from {{.Per}} consecutive values: r += g, compare, subtract
// what the code stands for, in float32 and in MXNet's order. Values past
// P.aux (the value count of this dispatch) are padding: no code, residual
// untouched, bits 0.
//
// Subnormals. WGSL lets an adapter flush subnormal float32 to zero
// (SwiftShader, Chrome's CPU WebGPU, does), which would change codes and
// residuals of values below 1.2e-38 (e.g. 1bit with threshold 0). So the
// comparisons are done on the bits (f_gt & co.), negation flips the sign bit,
// and an addition where one side is ±0 returns the other side's bits
// (exact_add), as IEEE arithmetic does. A sum of two nonzero values that is
// itself subnormal can still be flushed on such adapters.
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> r: array<f32>;
@group(0) @binding(3) var<storage, read_write> outw: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
{{- template "each" .}}
    let w = i;
    let nvals = P.aux;
    let t = P.threshold;
  {{- if eq .Per 16}}
    let pos = t;
    let neg = f_neg(t);
    var word = 0u;
    for (var k = 0u; k < 16u; k = k + 1u) {
      let j = w * 16u + k;
      if (j >= nvals) { break; }
      var v = exact_add(r[j], g[j]);
      var code = 0u;
      if (f_ge(v, pos)) {
        code = 3u;
        v = exact_add(v, f_neg(pos));
      } else if (f_le(v, neg)) {
        code = 2u;
        v = exact_add(v, f_neg(neg));
      }
      r[j] = v;
      word = word | (code << (8u * (k / 4u) + 6u - 2u * (k % 4u)));
    }
  {{- else}}
    var word = 0u;
    for (var k = 0u; k < 32u; k = k + 1u) {
      let j = w * 32u + k;
      if (j >= nvals) { break; }
      var v = exact_add(r[j], g[j]);
      if (f_gt(v, t)) {
        word = word | (1u << (8u * (k / 8u) + 7u - k % 8u));
        v = exact_add(v, -1.0);
      } else {
        v = exact_add(v, 1.0);
      }
      r[j] = v;
    }
  {{- end}}
    outw[w] = word;
  }
}

fn is_zero(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) == 0u; }

fn is_nan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }

fn f_neg(x: f32) -> f32 { return bitcast<f32>(bitcast<u32>(x) ^ 0x80000000u); }

// exact_add is a + b, except that a ±0 operand yields the other operand's
// bits (IEEE gives the same value; a flushing adapter would zero a
// subnormal). +0 + -0 stays an ordinary addition (+0).
fn exact_add(a: f32, b: f32) -> f32 {
  if (is_zero(a) && !is_zero(b)) {
    return b;
  }
  if (is_zero(b) && !is_zero(a)) {
    return a;
  }
  return a + b;
}

// okey maps a non-NaN float32 to an unsigned key with the same order
// (both zeros to one key), so comparisons see subnormals.
fn okey(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  if (is_zero(x)) {
    return 0x80000000u;
  }
  if ((b & 0x80000000u) != 0u) {
    return ~b;
  }
  return b | 0x80000000u;
}

// IEEE comparisons on the bits: false whenever a NaN is involved.
fn f_gt(a: f32, b: f32) -> bool { return !is_nan(a) && !is_nan(b) && okey(a) > okey(b); }
fn f_ge(a: f32, b: f32) -> bool { return !is_nan(a) && !is_nan(b) && okey(a) >= okey(b); }
fn f_le(a: f32, b: f32) -> bool { return !is_nan(a) && !is_nan(b) && okey(a) <= okey(b); }
