// opt_sgd.wgsl: SGD (sgdStep, sgdMomStep in kvcore). Without momentum it
// also runs NAG (MXNet calls sgd_update there). s0 = momentum.
{{template "optbind" .}}
{{template "opthead" .}}
    let wi = w[i];
  {{- if eq .NS 0}}
    let decay = 1.0 - sp.lr * sp.wd;
    if (sp.clip_gradient >= 0.0) {
      w[i] = decay * wi - sp.lr * clipv(sp.rescale_grad * grad(i), sp.clip_gradient);
    } else {
      let lrs = sp.lr * sp.rescale_grad;
      w[i] = decay * wi - lrs * grad(i);
    }
  {{- else}}
    let lrwd = sp.lr * sp.wd;
    var m: V;
    if (sp.clip_gradient >= 0.0) {
      m = sp.momentum * s0[i] - lrwd * wi - sp.lr * clipv(sp.rescale_grad * grad(i), sp.clip_gradient);
    } else {
      let lrs = sp.lr * sp.rescale_grad;
      m = sp.momentum * s0[i] - lrwd * wi - lrs * grad(i);
    }
    s0[i] = m;
    w[i] = wi + m;
  {{- end}}
  }
}
