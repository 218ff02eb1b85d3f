// opt_rmsprop.wgsl: RMSProp (rmspropStep; with 3 states the centered
// rmspropCenteredStep in kvcore). s0 = n; centered: s1 = g, s2 = delta.
// Weight decay goes inside the clip.
{{template "optbind" .}}
{{template "opthead" .}}
    let g1 = P.sp.gamma1;
    let ng1 = 1.0 - P.sp.gamma1;
    let w0 = w[i]; // read once (a read after a store is reloaded)
    var gr = P.sp.rescale_grad * grad(i) + P.sp.wd * w0;
    if (P.sp.clip_gradient >= 0.0) {
      gr = clipv(gr, P.sp.clip_gradient);
    }
  {{- if eq .NS 1}}
    let ni = ng1 * (gr * gr) + g1 * s0[i];
    s0[i] = ni;
    var wi = w0 - P.sp.lr * (gr / sqrt(ni + P.sp.epsilon));
  {{- else}}
    let ni = ng1 * gr * gr + g1 * s0[i];
    let gi = ng1 * gr + g1 * s1[i];
    let di = P.sp.gamma2 * s2[i] - P.sp.lr * gr / sqrt(ni - gi * gi + P.sp.epsilon);
    s0[i] = ni;
    s1[i] = gi;
    s2[i] = di;
    var wi = w0 + di;
  {{- end}}
    if ((P.sp.flags & 4u) != 0u && P.sp.clip_weights >= 0.0) {
      wi = clipv(wi, P.sp.clip_weights);
    }
    w[i] = wi;
  }
}
