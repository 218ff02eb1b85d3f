// opt_adadelta.wgsl: AdaDelta (adadeltaStep in kvcore): no learning rate,
// weight decay on the weight. s0 = acc_g, s1 = acc_delta.
{{template "optbind" .}}
{{template "opthead" .}}
    let rho = sp.rho;
    let nrho = 1.0 - sp.rho;
    let eps = sp.epsilon;
    let gr = rescaled(grad(i));
    let ag = rho * s0[i] + nrho * gr * gr;
    let d = sqrt(s1[i] + eps) / sqrt(ag + eps) * gr;
    s0[i] = ag;
    s1[i] = rho * s1[i] + nrho * d * d;
    w[i] = w[i] - (d + sp.wd * w[i]);
  }
}
