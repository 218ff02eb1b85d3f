package compute_test

import (
	"fmt"

	"github.com/webkv/webkv/kvcore/compute"
)

// The CPU backend, the reference every Backend is checked against: sum
// three buffers left to right, scaled, as a store merges three devices.
func ExampleCPU() {
	be := compute.NewCPU(nil)
	var srcs []compute.Buffer
	for i := range 3 {
		b, err := be.Alloc(4)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer be.Free(b)
		if err := be.Fill(b, float32(i+1)); err != nil {
			fmt.Println(err)
			return
		}
		srcs = append(srcs, b)
	}
	dst, _ := be.Alloc(4)
	defer be.Free(dst)
	if err := be.Reduce(dst, srcs, 0.5); err != nil {
		fmt.Println(err)
		return
	}
	out := make([]float32, 4)
	if err := be.Read(dst, 0, out); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(be.Name(), out)
	// Output: cpu [3 3 3 3]
}
