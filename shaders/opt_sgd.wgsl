// opt_sgd.wgsl: SGD (sgdStep, sgdMomStep in kvcore). Without momentum it
// also runs NAG (MXNet calls sgd_update there). s0 = momentum.
{{template "optbind" .}}
{{template "opthead" .}}
    let wi = w[i];
  {{- if eq .NS 0}}
    let decay = 1.0 - P.sp.lr * P.sp.wd;
    if (P.sp.clip_gradient >= 0.0) {
      w[i] = decay * wi - P.sp.lr * clipv(P.sp.rescale_grad * grad(i), P.sp.clip_gradient);
    } else {
      let lrs = P.sp.lr * P.sp.rescale_grad;
      w[i] = decay * wi - lrs * grad(i);
    }
  {{- else}}
    let lrwd = P.sp.lr * P.sp.wd;
    var m: V;
    if (P.sp.clip_gradient >= 0.0) {
      m = P.sp.momentum * s0[i] - lrwd * wi - P.sp.lr * clipv(P.sp.rescale_grad * grad(i), P.sp.clip_gradient);
    } else {
      let lrs = P.sp.lr * P.sp.rescale_grad;
      m = P.sp.momentum * s0[i] - lrwd * wi - lrs * grad(i);
    }
    s0[i] = m;
    w[i] = wi + m;
  {{- end}}
  }
}
