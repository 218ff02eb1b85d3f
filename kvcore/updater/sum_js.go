//go:build js

package updater

import "github.com/webkv/webkv/kvcore/internal/sha256"

// sum256 is SHA-256 without crypto/sha256 (see package
// kvcore/internal/sha256 for why).
func sum256(b []byte) [32]byte { return sha256.Sum256(b) }
