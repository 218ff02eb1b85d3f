// opt_adadelta.wgsl: AdaDelta (adadeltaStep in kvcore): no learning rate,
// weight decay on the weight. s0 = acc_g, s1 = acc_delta.
{{template "optbind" .}}
{{template "opthead" .}}
    let rho = P.sp.rho;
    let nrho = 1.0 - P.sp.rho;
    let eps = P.sp.epsilon;
    let w0 = w[i]; // weight and states read once (a read after a store is reloaded)
    let s1i = s1[i];
    let gr = rescaled(grad(i));
    let ag = rho * s0[i] + nrho * gr * gr;
    let d = sqrt(s1i + eps) / sqrt(ag + eps) * gr;
    s0[i] = ag;
    s1[i] = rho * s1i + nrho * d * d;
    w[i] = w0 - (d + P.sp.wd * w0);
  }
}
