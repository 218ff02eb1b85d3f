// Command genopt writes optimizers_wasm.go, the optimizer loops of package
// kernels unrolled for Go's wasm backend. Go's wasm code returns to a
// br_table dispatch at the top of the function on every loop iteration, so
// the plain loops are bound by that dispatch; unrolled, it is paid once per
// 8 elements, with one bounds check per array for the whole unrolled part.
// The bodies are the reference loops' expressions (optimizers.go) with the
// switches turned into values that change nothing, as the AVX2 loops do
// (clip to +Inf, 1*g, /1), so there is one loop per kernel;
// TestOptimizersVecBitExact checks the bits under GOOS=wasip1 and js.
//
//	go generate ./kvcore/internal/kernels
//
// A test of this package fails when optimizers_wasm.go differs from what it
// writes.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"log"
	"os"
	"regexp"
	"strings"
)

const unroll = 8

type kernel struct {
	name   string   // xxxVec
	params string   // after p *Params
	slices []string // the slices besides w, in parameter order
	setup  string   // constants, from p
	body   string   // one element; {j} is its index, x_ the slice x's array
	ret    string   // "" or LAMB phase 1's sums
}

// The clip bounds: c when the reference clips, +Inf (no change) otherwise.
const clip = "c := bound(p.ClipGradient, true)\n"

var kernels = []kernel{
	{name: "sgdVec", params: "w, g []float32", slices: []string{"g"},
		setup: clip + `a, b := p.LR, p.RescaleGrad
if p.ClipGradient < 0 {
	a, b = p.LR*p.RescaleGrad, 1
}
decay := 1 - float32(p.LR*p.WD)`,
		body: `w_[{j}] = float32(decay*w_[{j}]) - float32(a*clip32(b*g_[{j}], c))`},
	{name: "sgdMomVec", params: "w, g, mom []float32", slices: []string{"g", "mom"},
		setup: clip + `a, b := p.LR, p.RescaleGrad
if p.ClipGradient < 0 {
	a, b = p.LR*p.RescaleGrad, 1
}
mu, lrwd := p.Momentum, p.LR*p.WD`,
		body: `m{j} := float32(mu*mom_[{j}]) - float32(lrwd*w_[{j}]) - float32(a*clip32(b*g_[{j}], c))
mom_[{j}] = m{j}
w_[{j}] += m{j}`},
	{name: "nagVec", params: "w, g, mom []float32", slices: []string{"g", "mom"},
		setup: clip + `mu, lr, wd, rs := p.Momentum, p.LR, p.WD, p.RescaleGrad
mu1 := mu + 1`,
		body: `gr{j} := clip32(rs*g_[{j}], c)
m{j} := float32(mu * mom_[{j}])
w{j} := w_[{j}] - m{j} + float32(mu1*(m{j}-float32(lr*(gr{j}+float32(wd*w_[{j}])))))
w_[{j}] = w{j}
mom_[{j}] = m{j} - float32(lr*(gr{j}+float32(wd*w{j})))`},
	{name: "adamVec", params: "w, g, mean, vr []float32", slices: []string{"g", "mean", "vr"},
		setup: clip + `b1, b2, nb1, nb2 := p.Beta1, p.Beta2, 1-p.Beta1, 1-p.Beta2
rs, wd, lr, eps := p.RescaleGrad, p.WD, p.Coef1, p.Epsilon`,
		body: `gr{j} := clip32(float32(g_[{j}]*rs)+float32(w_[{j}]*wd), c)
m{j} := float32(b1*mean_[{j}]) + float32(nb1*gr{j})
v{j} := float32(b2*vr_[{j}]) + float32(nb2*gr{j}*gr{j})
mean_[{j}], vr_[{j}] = m{j}, v{j}
w_[{j}] -= lr * m{j} / (sqrt32(v{j}) + eps)`},
	{name: "adamWVec", params: "w, g, mean, vr []float32", slices: []string{"g", "mean", "vr"},
		setup: clip + `b1, b2, nb1, nb2 := p.Beta1, p.Beta2, 1-p.Beta1, 1-p.Beta2
rs, wd, eta, eps := p.RescaleGrad, p.WD, p.Coef1, p.Epsilon`,
		body: `gr{j} := clip32(rs*g_[{j}], c)
m{j} := float32(b1*mean_[{j}]) + float32(nb1*gr{j})
v{j} := float32(b2*vr_[{j}]) + float32(nb2*gr{j}*gr{j})
mean_[{j}], vr_[{j}] = m{j}, v{j}
w_[{j}] -= float32(eta * (m{j}/(sqrt32(v{j})+eps) + float32(wd*w_[{j}])))`},
	{name: "adaGradVec", params: "w, g, hist []float32", slices: []string{"g", "hist"},
		setup: clip + `rs, wd, nlr, eps := p.RescaleGrad, p.WD, -p.LR, p.Epsilon`,
		body: `gr{j} := clip32(rs*g_[{j}], c)
h{j} := hist_[{j}] + float32(gr{j}*gr{j})
hist_[{j}] = h{j}
w_[{j}] += float32((gr{j}/sqrt32(h{j}+eps) + float32(w_[{j}]*wd)) * nlr)`},
	{name: "rmsPropVec", params: "w, g, n []float32", slices: []string{"g", "n"},
		setup: clip + `g1, ng1 := p.Gamma1, 1-p.Gamma1
rs, wd, lr, eps := p.RescaleGrad, p.WD, p.LR, p.Epsilon
cw := bound(p.ClipWeights, p.Flags&FlagClipWeights != 0)`,
		body: `gr{j} := clip32(float32(rs*g_[{j}])+float32(wd*w_[{j}]), c)
n{j} := float32(ng1*(gr{j}*gr{j})) + float32(g1*n_[{j}])
n_[{j}] = n{j}
w_[{j}] = clip32(w_[{j}]-float32(lr*(gr{j}/sqrt32(n{j}+eps))), cw)`},
	{name: "rmsPropCenteredVec", params: "w, g, n, gm, delta []float32", slices: []string{"g", "n", "gm", "delta"},
		setup: clip + `g1, ng1, g2 := p.Gamma1, 1-p.Gamma1, p.Gamma2
rs, wd, lr, eps := p.RescaleGrad, p.WD, p.LR, p.Epsilon
cw := bound(p.ClipWeights, p.Flags&FlagClipWeights != 0)`,
		body: `gr{j} := clip32(float32(rs*g_[{j}])+float32(wd*w_[{j}]), c)
n{j} := float32(ng1*gr{j}*gr{j}) + float32(g1*n_[{j}])
gm{j} := float32(ng1*gr{j}) + float32(g1*gm_[{j}])
d{j} := float32(g2*delta_[{j}]) - lr*gr{j}/sqrt32(n{j}-float32(gm{j}*gm{j})+eps)
n_[{j}], gm_[{j}], delta_[{j}] = n{j}, gm{j}, d{j}
w_[{j}] = clip32(w_[{j}]+d{j}, cw)`},
	{name: "adaDeltaVec", params: "w, g, accG, accD []float32", slices: []string{"g", "accG", "accD"},
		setup: clip + `rho, nrho := p.Rho, 1-p.Rho
rs, wd, eps := p.RescaleGrad, p.WD, p.Epsilon`,
		body: `gr{j} := clip32(rs*g_[{j}], c)
ag{j} := float32(rho*accG_[{j}]) + float32(nrho*gr{j}*gr{j})
d{j} := float32(sqrt32(accD_[{j}]+eps) / sqrt32(ag{j}+eps) * gr{j})
accG_[{j}] = ag{j}
accD_[{j}] = float32(rho*accD_[{j}]) + float32(nrho*d{j}*d{j})
w_[{j}] -= d{j} + float32(wd*w_[{j}])`},
	{name: "signSGDVec", params: "w, g []float32", slices: []string{"g"},
		setup: `lr := p.LR
decay := 1 - float32(lr*(p.WD+p.WDLH))`,
		body: `w_[{j}] = float32(decay*w_[{j}]) - float32(lr*sign32(g_[{j}]))`},
	{name: "signumVec", params: "w, g, mom []float32", slices: []string{"g", "mom"},
		setup: clip + `mu, nmu := p.Momentum, 1-p.Momentum
rs, lr := p.RescaleGrad, p.LR
nmuwd := nmu * p.WD
decay := 1 - float32(lr*p.WDLH)`,
		body: `m{j} := float32(mu*mom_[{j}]) - float32(nmuwd*w_[{j}]) - float32(nmu*clip32(rs*g_[{j}], c))
mom_[{j}] = m{j}
w_[{j}] = float32(decay*w_[{j}]) + float32(lr*sign32(m{j}))`},
	{name: "ftrlVec", params: "w, g, z, n []float32", slices: []string{"g", "z", "n"},
		setup: clip + `rs, wd, lr, l1, beta := p.RescaleGrad, p.WD, p.LR, p.Lamda1, p.Beta`,
		body: `gr{j} := clip32(rs*g_[{j}], c)
n{j} := n_[{j}]
gg{j} := float32(gr{j} * gr{j})
z{j} := z_[{j}] + (gr{j} - (sqrt32(n{j}+gg{j})-sqrt32(n{j}))*w_[{j}]/lr)
n{j} += gg{j}
z_[{j}], n_[{j}] = z{j}, n{j}
w_[{j}] = (float32(sign32(z{j})*l1) - z{j}) / ((beta+sqrt32(n{j}))/lr + wd) * keep32(z{j}, l1)`},
	{name: "lambPhase2Vec", params: "lr float32, w, mean, vr []float32", slices: []string{"mean", "vr"},
		setup: `wd, eps := p.WD, p.Epsilon
c1, c2 := lambCoefs(p)`,
		body: `w_[{j}] -= float32(lr * ((mean_[{j}]/c1)/(sqrt32(vr_[{j}]/c2)+eps) + float32(wd*w_[{j}])))`},
	{name: "lambPhase1Vec", params: "w, g, mean, vr []float32", slices: []string{"g", "mean", "vr"},
		setup: clip + `b1, b2, nb1, nb2 := p.Beta1, p.Beta2, 1-p.Beta1, 1-p.Beta2
rs, wd, eps := p.RescaleGrad, p.WD, p.Epsilon
c1, c2 := lambCoefs(p)
var ww, uu float64`,
		body: `gr{j} := clip32(g_[{j}]*rs, c)
m{j} := float32(b1*mean_[{j}]) + float32(nb1*gr{j})
v{j} := float32(b2*vr_[{j}]) + float32(nb2*gr{j}*gr{j})
mean_[{j}], vr_[{j}] = m{j}, v{j}
u{j} := (m{j}/c1)/(sqrt32(v{j}/c2)+eps) + float32(wd*w_[{j}])
ww += float64(float64(w_[{j}]) * float64(w_[{j}]))
uu += float64(float64(u{j}) * float64(u{j}))`,
		ret: "ww, uu"},
}

var (
	declared = regexp.MustCompile(`(?m)^\s*(?:var )?([\w, ]+?)(?: :=| float64)`)
	perElem  = regexp.MustCompile(`(\w+)\{j\}`)
)

// checkShadow fails if an element's variable (x{j} for j = 0..unroll-1)
// would shadow a constant of the setup: it would silently change the loop.
func checkShadow(k kernel) {
	consts := map[string]bool{}
	for _, m := range declared.FindAllStringSubmatch(k.setup, -1) {
		for _, id := range strings.Split(m[1], ",") {
			consts[strings.TrimSpace(id)] = true
		}
	}
	for _, m := range perElem.FindAllStringSubmatch(k.body, -1) {
		for j := range unroll {
			if id := fmt.Sprint(m[1], j); consts[id] {
				log.Fatalf("genopt: %s: element variable %s{j} shadows %s of the setup", k.name, m[1], id)
			}
		}
	}
}

// Generate returns the formatted source of optimizers_wasm.go.
func Generate() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`// Code generated by genopt (go generate); DO NOT EDIT.

//go:build wasm

package kernels

import "unsafe"

`)
	for _, k := range kernels {
		checkShadow(k)
		res := "int"
		if k.ret != "" {
			res = "(int, float64, float64)"
		}
		fmt.Fprintf(&b, "func %s(p *Params, %s) %s {\n", k.name, k.params, res)
		fmt.Fprintf(&b, "nv := len(w) &^ %d\n", unroll-1)
		arrays := append([]string{"w"}, k.slices...)
		b.WriteString(k.setup + "\n")
		b.WriteString("if nv > 0 {\n// One bounds check per array for the whole unrolled part.\n")
		for _, s := range arrays {
			fmt.Fprintf(&b, "_ = %s[nv-1]\n", s)
			fmt.Fprintf(&b, "p%s := unsafe.Pointer(&%s[0])\n", s, s)
		}
		fmt.Fprintf(&b, "for off := uintptr(0); off < uintptr(nv)*4; off += %d {\n", 4*unroll)
		for _, s := range arrays {
			fmt.Fprintf(&b, "%s_ := (*[%d]float32)(unsafe.Add(p%s, off))\n", s, unroll, s)
		}
		for j := range unroll {
			b.WriteString(strings.ReplaceAll(k.body, "{j}", fmt.Sprint(j)) + "\n")
		}
		b.WriteString("}\n}\n")
		if k.ret != "" {
			fmt.Fprintf(&b, "return nv, %s\n}\n\n", k.ret)
		} else {
			b.WriteString("return nv\n}\n\n")
		}
	}
	return format.Source(b.Bytes())
}

func main() {
	out := flag.String("o", "optimizers_wasm.go", "output file")
	flag.Parse()
	src, err := Generate()
	if err != nil {
		log.Fatalf("genopt: %v", err)
	}
	if err := os.WriteFile(*out, src, 0o644); err != nil {
		log.Fatalf("genopt: %v", err)
	}
}
