//go:build !js && !wasip1

package relay

import (
	"io/fs"
	"testing/fstest"
)

func fstestFS() fs.FS {
	return fstest.MapFS{"index.html": {Data: []byte("hi")}}
}
