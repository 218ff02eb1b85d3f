// Command precompress writes NAME.gz and NAME.br beside each file named on
// its command line (see serve.Precompress) and prints their sizes:
//
//	go run ./www/serve/precompress DIR FILE...
//
// wasm/js/build.sh runs it on the browser runtime. With -budget-gz N it
// fails (exit 1) when the first file's gzip twin is larger than N bytes.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/webkv/webkv/www/serve"
)

func main() {
	budget := flag.Int64("budget-gz", 0, "fail when the first file's gzipped size exceeds this many bytes (0: no check)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: precompress [-budget-gz BYTES] DIR FILE...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() < 2 {
		flag.Usage()
		os.Exit(2)
	}
	sizes, err := serve.Precompress(flag.Arg(0), flag.Args()[1:]...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, s := range sizes {
		fmt.Printf("%-18s %9d bytes raw, %9d gzip, %9d brotli\n", s.Name+":", s.Raw, s.Gzip, s.Brotli)
	}
	if *budget > 0 && sizes[0].Gzip > *budget {
		fmt.Fprintf(os.Stderr, "%s: %d bytes gzipped, over the budget of %d (see RATIONALE.md, \"Why is the browser runtime small?\")\n", sizes[0].Name, sizes[0].Gzip, *budget)
		os.Exit(1)
	}
}
