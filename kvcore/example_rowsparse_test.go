package kvcore_test

import (
	"context"
	"fmt"

	"github.com/webkv/webkv/kvcore"
)

// An embedding table of 4 rows of 2: two devices push gradients for some
// rows (row 2 by both: summed), and a pull asks for rows [2, 0, 2].
func ExampleStore_PushRowSparse() {
	ctx := context.Background()
	kv, _ := kvcore.Create(ctx, "local", nil)
	defer kv.Close()
	table, _ := kvcore.FromSlice(kvcore.CPU(0), []float32{1, 1, 2, 2, 3, 3, 4, 4}, 4, 2)
	kv.Init(ctx, kvcore.IntKey(0), table)

	g0, _ := kvcore.FromSlice(kvcore.CPU(0), []float32{10, 10, 20, 20}, 2, 2)
	g1, _ := kvcore.FromSlice(kvcore.CPU(1), []float32{5, 5}, 1, 2)
	kv.PushRowSparse(kvcore.IntKey(0),
		kvcore.RowSparse{Rows: []int64{0, 2}, Data: g0},
		kvcore.RowSparse{Rows: []int64{2}, Data: g1})

	rows, _ := kvcore.NewArray(kvcore.CPU(0), 2, 2) // the rows only
	out := kvcore.RowSparse{Data: rows}
	kv.RowSparsePull(kvcore.IntKey(0), &out, []int64{2, 0, 2})
	v, err := out.Data.ToSlice(ctx)
	fmt.Println(out.Rows, v, err)

	dense, _ := kvcore.NewArray(kvcore.CPU(0), 4, 2) // the key's shape: other rows zero
	kv.RowSparsePull(kvcore.IntKey(0), &kvcore.RowSparse{Data: dense}, []int64{2})
	d, err := dense.ToSlice(ctx)
	fmt.Println(d, err)
	// Output:
	// [0 2] [10 10 25 25] <nil>
	// [0 0 0 0 25 25 0 0] <nil>
}
