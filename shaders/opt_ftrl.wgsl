// opt_ftrl.wgsl: FTRL-Proximal (ftrlStep in kvcore). s0 = z, s1 = n.
{{template "optbind" .}}
{{template "opthead" .}}
    let gr = rescaled(grad(i));
    let ni = s1[i];
    let gg = gr * gr;
    let zi = s0[i] + (gr - (sqrt(ni + gg) - sqrt(ni)) * w[i] / P.sp.lr);
    let n2 = ni + gg;
    s0[i] = zi;
    s1[i] = n2;
    let l1 = V(P.sp.lamda1);
    let keep = select(V(0.0), V(1.0), (zi > l1) | (-zi > l1));
    w[i] = (signv(zi) * P.sp.lamda1 - zi) / ((P.sp.beta + sqrt(n2)) / P.sp.lr + P.sp.wd) * keep;
  }
}
