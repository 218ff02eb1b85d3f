// opt_adagrad.wgsl: AdaGrad (adagradStep in kvcore), s0 = history; epsilon
// inside the square root.
{{template "optbind" .}}
{{template "opthead" .}}
    let w0 = w[i]; // read once (a read after a store is reloaded)
    let gr = rescaled(grad(i));
    let h = s0[i] + gr * gr;
    s0[i] = h;
    w[i] = w0 + (gr / sqrt(h + P.sp.epsilon) + w0 * P.sp.wd) * (-P.sp.lr);
  }
}
