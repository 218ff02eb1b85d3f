// Command genopt writes optimizers_wasm.go, the optimizer loops of package
// kernels unrolled for Go's wasm backend. Go's wasm code returns to a
// br_table dispatch at the top of the function on every loop iteration, so
// the plain loops are bound by that dispatch; unrolled, it is paid once per
// 8 elements, with one bounds check per array for the whole unrolled part.
// Every jump between basic blocks goes through that dispatch too, so the
// loops are branch-free where the reference has no switch on: sign and
// FTRL's |z| > lamda1 come from comparison results (0 or 1, no branch), and
// each kernel has a variant per combination of its clip switches, the
// common one without clipping (clip32 branches). The bodies are the
// reference loops' expressions (optimizers.go); TestOptimizersVecBitExact
// checks the bits under GOOS=wasip1 and js.
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
	args   string   // the parameters' names, for the variants' calls
	slices []string // the slices besides w, in parameter order
	// switches are the clips the kernel has: in body, {name} is clip32
	// in the variant where the switch is on, noclip32 where it is off.
	switches []sw
	setup    string // constants, from p
	body     string // one element; {j} is its index, x_ the slice x's array
	ret      string // "" or LAMB phase 1's sums
}

type sw struct {
	name string // placeholder in body, and the variant's name suffix
	on   string // condition on p
}

var (
	gradClip   = sw{"clip", "p.ClipGradient >= 0"}
	weightClip = sw{"clipW", "p.Flags&FlagClipWeights != 0 && p.ClipWeights >= 0"}
)

// The clip bound of the gradient (only read where the switch is on).
const clip = "c := p.ClipGradient\n"

var kernels = []kernel{
	{name: "sgdVec", params: "w, g []float32", args: "w, g", slices: []string{"g"}, switches: []sw{gradClip},
		setup: clip + `a, b := p.LR, p.RescaleGrad
if p.ClipGradient < 0 {
	a, b = p.LR*p.RescaleGrad, 1
}
decay := 1 - float32(p.LR*p.WD)`,
		body: `w_[{j}] = float32(decay*w_[{j}]) - float32(a*{clip}(b*g_[{j}], c))`},
	{name: "sgdMomVec", params: "w, g, mom []float32", args: "w, g, mom", slices: []string{"g", "mom"}, switches: []sw{gradClip},
		setup: clip + `a, b := p.LR, p.RescaleGrad
if p.ClipGradient < 0 {
	a, b = p.LR*p.RescaleGrad, 1
}
mu, lrwd := p.Momentum, p.LR*p.WD`,
		body: `m{j} := float32(mu*mom_[{j}]) - float32(lrwd*w_[{j}]) - float32(a*{clip}(b*g_[{j}], c))
mom_[{j}] = m{j}
w_[{j}] += m{j}`},
	{name: "nagVec", params: "w, g, mom []float32", args: "w, g, mom", slices: []string{"g", "mom"}, switches: []sw{gradClip},
		setup: clip + `mu, lr, wd, rs := p.Momentum, p.LR, p.WD, p.RescaleGrad
mu1 := mu + 1`,
		body: `gr{j} := {clip}(float32(rs*g_[{j}]), c)
m{j} := float32(mu * mom_[{j}])
w{j} := w_[{j}] - m{j} + float32(mu1*(m{j}-float32(lr*(gr{j}+float32(wd*w_[{j}])))))
w_[{j}] = w{j}
mom_[{j}] = m{j} - float32(lr*(gr{j}+float32(wd*w{j})))`},
	{name: "adamVec", params: "w, g, mean, vr []float32", args: "w, g, mean, vr", slices: []string{"g", "mean", "vr"}, switches: []sw{gradClip},
		setup: clip + `b1, b2, nb1, nb2 := p.Beta1, p.Beta2, 1-p.Beta1, 1-p.Beta2
rs, wd, lr, eps := p.RescaleGrad, p.WD, p.Coef1, p.Epsilon`,
		body: `gr{j} := {clip}(float32(g_[{j}]*rs)+float32(w_[{j}]*wd), c)
m{j} := float32(b1*mean_[{j}]) + float32(nb1*gr{j})
v{j} := float32(b2*vr_[{j}]) + float32(nb2*gr{j}*gr{j})
mean_[{j}], vr_[{j}] = m{j}, v{j}
w_[{j}] -= lr * m{j} / (sqrt32(v{j}) + eps)`},
	{name: "adamWVec", params: "w, g, mean, vr []float32", args: "w, g, mean, vr", slices: []string{"g", "mean", "vr"}, switches: []sw{gradClip},
		setup: clip + `b1, b2, nb1, nb2 := p.Beta1, p.Beta2, 1-p.Beta1, 1-p.Beta2
rs, wd, eta, eps := p.RescaleGrad, p.WD, p.Coef1, p.Epsilon`,
		body: `gr{j} := {clip}(float32(rs*g_[{j}]), c)
m{j} := float32(b1*mean_[{j}]) + float32(nb1*gr{j})
v{j} := float32(b2*vr_[{j}]) + float32(nb2*gr{j}*gr{j})
mean_[{j}], vr_[{j}] = m{j}, v{j}
w_[{j}] -= float32(eta * (m{j}/(sqrt32(v{j})+eps) + float32(wd*w_[{j}])))`},
	{name: "adaGradVec", params: "w, g, hist []float32", args: "w, g, hist", slices: []string{"g", "hist"}, switches: []sw{gradClip},
		setup: clip + `rs, wd, nlr, eps := p.RescaleGrad, p.WD, -p.LR, p.Epsilon`,
		body: `gr{j} := {clip}(float32(rs*g_[{j}]), c)
h{j} := hist_[{j}] + float32(gr{j}*gr{j})
hist_[{j}] = h{j}
w_[{j}] += float32((gr{j}/sqrt32(h{j}+eps) + float32(w_[{j}]*wd)) * nlr)`},
	{name: "rmsPropVec", params: "w, g, n []float32", args: "w, g, n", slices: []string{"g", "n"}, switches: []sw{gradClip, weightClip},
		setup: clip + `g1, ng1 := p.Gamma1, 1-p.Gamma1
rs, wd, lr, eps := p.RescaleGrad, p.WD, p.LR, p.Epsilon
cw := p.ClipWeights`,
		body: `gr{j} := {clip}(float32(rs*g_[{j}])+float32(wd*w_[{j}]), c)
n{j} := float32(ng1*(gr{j}*gr{j})) + float32(g1*n_[{j}])
n_[{j}] = n{j}
w_[{j}] = {clipW}(w_[{j}]-float32(lr*(gr{j}/sqrt32(n{j}+eps))), cw)`},
	{name: "rmsPropCenteredVec", params: "w, g, n, gm, delta []float32", args: "w, g, n, gm, delta", slices: []string{"g", "n", "gm", "delta"}, switches: []sw{gradClip, weightClip},
		setup: clip + `g1, ng1, g2 := p.Gamma1, 1-p.Gamma1, p.Gamma2
rs, wd, lr, eps := p.RescaleGrad, p.WD, p.LR, p.Epsilon
cw := p.ClipWeights`,
		body: `gr{j} := {clip}(float32(rs*g_[{j}])+float32(wd*w_[{j}]), c)
n{j} := float32(ng1*gr{j}*gr{j}) + float32(g1*n_[{j}])
gm{j} := float32(ng1*gr{j}) + float32(g1*gm_[{j}])
d{j} := float32(g2*delta_[{j}]) - lr*gr{j}/sqrt32(n{j}-float32(gm{j}*gm{j})+eps)
n_[{j}], gm_[{j}], delta_[{j}] = n{j}, gm{j}, d{j}
w_[{j}] = {clipW}(w_[{j}]+d{j}, cw)`},
	{name: "adaDeltaVec", params: "w, g, accG, accD []float32", args: "w, g, accG, accD", slices: []string{"g", "accG", "accD"}, switches: []sw{gradClip},
		setup: clip + `rho, nrho := p.Rho, 1-p.Rho
rs, wd, eps := p.RescaleGrad, p.WD, p.Epsilon`,
		body: `gr{j} := {clip}(float32(rs*g_[{j}]), c)
ag{j} := float32(rho*accG_[{j}]) + float32(nrho*gr{j}*gr{j})
d{j} := float32(sqrt32(accD_[{j}]+eps) / sqrt32(ag{j}+eps) * gr{j})
accG_[{j}] = ag{j}
accD_[{j}] = float32(rho*accD_[{j}]) + float32(nrho*d{j}*d{j})
w_[{j}] -= d{j} + float32(wd*w_[{j}])`},
	{name: "signSGDVec", params: "w, g []float32", args: "w, g", slices: []string{"g"},
		setup: `lr := p.LR
decay := 1 - float32(lr*(p.WD+p.WDLH))`,
		body: `w_[{j}] = float32(decay*w_[{j}]) - float32(lr*sign32bf(g_[{j}]))`},
	{name: "signumVec", params: "w, g, mom []float32", args: "w, g, mom", slices: []string{"g", "mom"}, switches: []sw{gradClip},
		setup: clip + `mu, nmu := p.Momentum, 1-p.Momentum
rs, lr := p.RescaleGrad, p.LR
nmuwd := nmu * p.WD
decay := 1 - float32(lr*p.WDLH)`,
		body: `m{j} := float32(mu*mom_[{j}]) - float32(nmuwd*w_[{j}]) - float32(nmu*{clip}(float32(rs*g_[{j}]), c))
mom_[{j}] = m{j}
w_[{j}] = float32(decay*w_[{j}]) + float32(lr*sign32bf(m{j}))`},
	{name: "ftrlVec", params: "w, g, z, n []float32", args: "w, g, z, n", slices: []string{"g", "z", "n"}, switches: []sw{gradClip},
		setup: clip + `rs, wd, lr, l1, beta := p.RescaleGrad, p.WD, p.LR, p.Lamda1, p.Beta`,
		body: `gr{j} := {clip}(float32(rs*g_[{j}]), c)
n{j} := n_[{j}]
gg{j} := float32(gr{j} * gr{j})
z{j} := z_[{j}] + (gr{j} - (sqrt32(n{j}+gg{j})-sqrt32(n{j}))*w_[{j}]/lr)
n{j} += gg{j}
z_[{j}], n_[{j}] = z{j}, n{j}
w_[{j}] = (float32(sign32bf(z{j})*l1) - z{j}) / ((beta+sqrt32(n{j}))/lr + wd) * keep32bf(z{j}, l1)`},
	{name: "lambPhase2Vec", params: "lr float32, w, mean, vr []float32", args: "lr, w, mean, vr", slices: []string{"mean", "vr"},
		setup: `wd, eps := p.WD, p.Epsilon
c1, c2 := lambCoefs(p)`,
		body: `w_[{j}] -= float32(lr * ((mean_[{j}]/c1)/(sqrt32(vr_[{j}]/c2)+eps) + float32(wd*w_[{j}])))`},
	{name: "lambPhase1Vec", params: "w, g, mean, vr []float32", args: "w, g, mean, vr", slices: []string{"g", "mean", "vr"}, switches: []sw{gradClip},
		setup: clip + `b1, b2, nb1, nb2 := p.Beta1, p.Beta2, 1-p.Beta1, 1-p.Beta2
rs, wd, eps := p.RescaleGrad, p.WD, p.Epsilon
c1, c2 := lambCoefs(p)
var ww, uu float64`,
		body: `gr{j} := {clip}(float32(g_[{j}]*rs), c)
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

// noclip32 is a clip that is off: the variants without clipping call it
// where the reference would call clip32 (it inlines to nothing).
func noclip32(x, c float32) float32 { return x }

// b2f32 is 1 for true, 0 for false: the comparison's result, no branch.
func b2f32(b bool) float32 {
	var i int32
	if b {
		i = 1
	}
	return float32(i)
}

// sign32bf is sign32 without a branch: 1, -1, or +0 (0 and NaN).
func sign32bf(x float32) float32 { return b2f32(x > 0) - b2f32(x < 0) }

// keep32bf is FTRL's (|z| > lamda1) factor without a branch.
func keep32bf(z, l1 float32) float32 {
	var k int32
	if z > l1 {
		k = 1
	}
	if -z > l1 {
		k = 1
	}
	return float32(k)
}
`)
	for _, k := range kernels {
		checkShadow(k)
		res := "int"
		if k.ret != "" {
			res = "(int, float64, float64)"
		}
		// The dispatch to the variant for p's switches.
		fmt.Fprintf(&b, "\nfunc %s(p *Params, %s) %s {\n", k.name, k.params, res)
		if len(k.switches) == 0 {
			fmt.Fprintf(&b, "return %sPlain(p, %s)\n}\n", k.name, k.args)
		} else {
			for _, x := range k.switches {
				fmt.Fprintf(&b, "%s := %s\n", x.name, x.on)
			}
			b.WriteString("switch {\n")
			for v := 1<<len(k.switches) - 1; v >= 0; v-- {
				var conds []string
				for i, x := range k.switches {
					if v&(1<<i) != 0 {
						conds = append(conds, x.name)
					} else {
						conds = append(conds, "!"+x.name)
					}
				}
				fmt.Fprintf(&b, "case %s:\nreturn %s(p, %s)\n", strings.Join(conds, " && "), variant(k, v), k.args)
			}
			b.WriteString("}\npanic(\"unreachable\")\n}\n")
		}
		for v := range 1 << len(k.switches) {
			body := k.body
			for i, x := range k.switches {
				f := "noclip32"
				if v&(1<<i) != 0 {
					f = "clip32"
				}
				body = strings.ReplaceAll(body, "{"+x.name+"}", f)
			}
			fmt.Fprintf(&b, "\nfunc %s(p *Params, %s) %s {\n", variant(k, v), k.params, res)
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
				b.WriteString(strings.ReplaceAll(body, "{j}", fmt.Sprint(j)) + "\n")
			}
			b.WriteString("}\n}\n")
			if k.ret != "" {
				fmt.Fprintf(&b, "return nv, %s\n}\n", k.ret)
			} else {
				b.WriteString("return nv\n}\n")
			}
		}
	}
	return format.Source(b.Bytes())
}

// variant names k's loop for the switches set in v: xxxVecPlain, or the
// names of the switches that are on (xxxVecClip, xxxVecClipClipW).
func variant(k kernel, v int) string {
	name := k.name
	for i, x := range k.switches {
		if v&(1<<i) != 0 {
			name += strings.ToUpper(x.name[:1]) + x.name[1:]
		}
	}
	if v == 0 {
		name += "Plain"
	}
	return name
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
