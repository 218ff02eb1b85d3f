// opt_adamw.wgsl: AdamW (adamwStep in kvcore): decoupled weight decay,
// coef1 = eta times the (bias-corrected) learning rate. s0 = mean, s1 = var.
{{template "optbind" .}}
{{template "opthead" .}}
    let nb1 = 1.0 - P.sp.beta1;
    let nb2 = 1.0 - P.sp.beta2;
    let wi = w[i];
    let gr = rescaled(grad(i));
    let m = P.sp.beta1 * s0[i] + nb1 * gr;
    let v = P.sp.beta2 * s1[i] + nb2 * gr * gr;
    s0[i] = m;
    s1[i] = v;
    w[i] = wi - P.sp.coef1 * (m / (sqrt(v) + P.sp.epsilon) + P.sp.wd * wi);
  }
}
