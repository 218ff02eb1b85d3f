//go:build !js

package updater

import "crypto/sha256"

// sum256 is SHA-256: the standard library's natively; in the browser
// runtime a plain-Go one (sum_js.go) that does not link the FIPS 140 module.
func sum256(b []byte) [32]byte { return sha256.Sum256(b) }
