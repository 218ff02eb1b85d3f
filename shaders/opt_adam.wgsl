// opt_adam.wgsl: Adam (adamStep in kvcore): wd inside the clip, step size
// lr*sqrt(1-beta2^t)/(1-beta1^t) precomputed in coef1. s0 = mean, s1 = var.
{{template "optbind" .}}
{{template "opthead" .}}
    let nb1 = 1.0 - P.sp.beta1;
    let nb2 = 1.0 - P.sp.beta2;
    let wi = w[i]; // one load: after the stores to s0, s1 it would be reloaded
  {{- if .Rescale}}
    var gr = grad(i) * P.sp.rescale_grad + wi * P.sp.wd;
    if (P.sp.clip_gradient >= 0.0) {
      gr = clipv(gr, P.sp.clip_gradient);
    }
  {{- else}}
    // rescale_grad is 1 and there is no clip (the Go side checked): the
    // same values without a multiply and a branch per element (~8% of the
    // kernel on SwiftShader).
    let gr = grad(i) + wi * P.sp.wd;
  {{- end}}
    let m = P.sp.beta1 * s0[i] + nb1 * gr;
    let v = P.sp.beta2 * s1[i] + nb2 * gr * gr;
    s0[i] = m;
    s1[i] = v;
    w[i] = wi - P.sp.coef1 * m / (sqrt(v) + P.sp.epsilon);
  }
}
