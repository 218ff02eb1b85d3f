// opt_adamw.wgsl: AdamW (adamwStep in kvcore): decoupled weight decay,
// coef1 = eta times the (bias-corrected) learning rate. s0 = mean, s1 = var.
{{template "optbind" .}}
{{template "opthead" .}}
    let nb1 = 1.0 - sp.beta1;
    let nb2 = 1.0 - sp.beta2;
    let wi = w[i];
    let gr = rescaled(grad(i));
    let m = sp.beta1 * s0[i] + nb1 * gr;
    let v = sp.beta2 * s1[i] + nb2 * gr * gr;
    s0[i] = m;
    s1[i] = v;
    w[i] = wi - sp.coef1 * (m / (sqrt(v) + sp.epsilon) + sp.wd * wi);
  }
}
