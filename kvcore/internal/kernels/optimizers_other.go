//go:build !wasm && (!amd64 || purego)

package kernels

// No vector optimizer loops here: the reference loops, which the compiler
// keeps tight natively, do every element.

func sgdVec(p *Params, w, g []float32) int                           { return 0 }
func sgdMomVec(p *Params, w, g, mom []float32) int                   { return 0 }
func nagVec(p *Params, w, g, mom []float32) int                      { return 0 }
func adamVec(p *Params, w, g, mean, vr []float32) int                { return 0 }
func adamWVec(p *Params, w, g, mean, vr []float32) int               { return 0 }
func adaGradVec(p *Params, w, g, hist []float32) int                 { return 0 }
func rmsPropVec(p *Params, w, g, n []float32) int                    { return 0 }
func rmsPropCenteredVec(p *Params, w, g, n, gm, delta []float32) int { return 0 }
func adaDeltaVec(p *Params, w, g, accG, accD []float32) int          { return 0 }
func signSGDVec(p *Params, w, g []float32) int                       { return 0 }
func signumVec(p *Params, w, g, mom []float32) int                   { return 0 }
func ftrlVec(p *Params, w, g, z, n []float32) int                    { return 0 }
func lambPhase2Vec(p *Params, lr float32, w, mean, vr []float32) int { return 0 }
func lambPhase1Vec(p *Params, w, g, mean, vr []float32) (int, float64, float64) {
	return 0, 0, 0
}
