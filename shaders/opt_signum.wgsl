// opt_signum.wgsl: Signum (signumStep in kvcore, s0 = momentum); without
// momentum signSGD (signsgdStep), which ignores rescale and clip.
{{template "optbind" .}}
{{template "opthead" .}}
  {{- if eq .NS 0}}
    let decay = 1.0 - P.sp.lr * (P.sp.wd + P.sp.wd_lh);
    w[i] = decay * w[i] - P.sp.lr * signv(grad(i));
  {{- else}}
    let mu = P.sp.momentum;
    let nmu = 1.0 - P.sp.momentum;
    let w0 = w[i]; // read once (a read after a store is reloaded)
    let gr = rescaled(grad(i));
    let m = mu * s0[i] - nmu * P.sp.wd * w0 - nmu * gr;
    s0[i] = m;
    w[i] = (1.0 - P.sp.lr * P.sp.wd_lh) * w0 + P.sp.lr * signv(m);
  {{- end}}
  }
}
