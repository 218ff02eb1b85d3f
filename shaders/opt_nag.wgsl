// opt_nag.wgsl: Nesterov momentum (nagStep in kvcore), s0 = momentum. The
// second momentum line reads the weight already updated, as MXNet's
// in-place nag_mom_update does.
{{template "optbind" .}}
{{template "opthead" .}}
    let gr = rescaled(grad(i));
    let mu1 = P.sp.momentum + 1.0;
    let m = P.sp.momentum * s0[i];
    let w0 = w[i];
    let wi = w0 - m + mu1 * (m - P.sp.lr * (gr + P.sp.wd * w0));
    w[i] = wi;
    s0[i] = m - P.sp.lr * (gr + P.sp.wd * wi);
  }
}
