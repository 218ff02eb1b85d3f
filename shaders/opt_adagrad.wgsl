// opt_adagrad.wgsl: AdaGrad (adagradStep in kvcore), s0 = history; epsilon
// inside the square root.
{{template "optbind" .}}
{{template "opthead" .}}
    let gr = rescaled(grad(i));
    let h = s0[i] + gr * gr;
    s0[i] = h;
    w[i] = w[i] + (gr / sqrt(h + sp.epsilon) + w[i] * sp.wd) * (-sp.lr);
  }
}
