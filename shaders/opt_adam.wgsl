// opt_adam.wgsl: Adam (adamStep in kvcore): wd inside the clip, step size
// lr*sqrt(1-beta2^t)/(1-beta1^t) precomputed in coef1. s0 = mean, s1 = var.
{{template "optbind" .}}
{{template "opthead" .}}
    let nb1 = 1.0 - sp.beta1;
    let nb2 = 1.0 - sp.beta2;
    let wi = w[i]; // one load: after the stores to s0, s1 it would be reloaded
    var gr = grad(i) * sp.rescale_grad + wi * sp.wd;
    if (sp.clip_gradient >= 0.0) {
      gr = clipv(gr, sp.clip_gradient);
    }
    let m = sp.beta1 * s0[i] + nb1 * gr;
    let v = sp.beta2 * s1[i] + nb2 * gr * gr;
    s0[i] = m;
    s1[i] = v;
    w[i] = wi - sp.coef1 * m / (sqrt(v) + sp.epsilon);
  }
}
