//go:build js

package main

import (
	"math"
	"syscall/js"
	"unsafe"

	"github.com/webkv/webkv/kvcore"
)

// Row-sparse calls (kvcore.RowSparse): a value is {rows, rowIds}: rowIds
// the row numbers (strictly increasing for a push), rows their values back
// to back (a Float32Array or number[] of rowIds.length * rowSize values).

// rawRows is a parsed {rows, rowIds}, copied into Go memory.
type rawRows struct {
	ids  []int64
	data []float32 // nil without rows
}

// toRowIDs reads row ids: an array of integers, an Int32Array,
// Uint32Array or BigInt64Array.
func toRowIDs(op string, v js.Value) ([]int64, error) {
	if v.IsUndefined() || v.IsNull() {
		return nil, badArg("webkv: %s: rowIds missing", op)
	}
	if !js.Global().Get("Array").Call("isArray", v).Bool() && !isInstance(v, "Int32Array") &&
		!isInstance(v, "Uint32Array") && !isInstance(v, "BigInt64Array") {
		return nil, badArg("webkv: %s: rowIds must be an array of integers, got %s", op, typeName(v))
	}
	if isInstance(v, "BigInt64Array") {
		v = js.Global().Get("Array").Call("from", v, js.Global().Get("Number"))
	}
	n := v.Length()
	ids := make([]int64, n)
	for i := range n {
		x := v.Index(i)
		if x.Type() != js.TypeNumber {
			return nil, badArg("webkv: %s: rowIds[%d] is not an integer", op, i)
		}
		f := x.Float()
		if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return nil, badArg("webkv: %s: rowIds[%d] = %v is not an integer", op, i, f)
		}
		ids[i] = int64(f)
	}
	return ids, nil
}

func parseRows(op string, v js.Value) (rawRows, error) {
	if v.Type() != js.TypeObject {
		return rawRows{}, badArg("webkv: %s: a row-sparse value is {rows, rowIds}, got %s", op, typeName(v))
	}
	ids, err := toRowIDs(op, v.Get("rowIds"))
	if err != nil {
		return rawRows{}, err
	}
	r := rawRows{ids: ids}
	rows := v.Get("rows")
	switch {
	case rows.IsUndefined() || rows.IsNull():
		if len(ids) > 0 {
			return rawRows{}, badArg("webkv: %s: %d rowIds without rows", op, len(ids))
		}
	case isInstance(rows, "Float32Array"):
		if n := rows.Length(); n > 0 {
			r.data = make([]float32, n)
			u8 := js.Global().Get("Uint8Array").New(rows.Get("buffer"), rows.Get("byteOffset"), n*4)
			js.CopyBytesToGo(unsafe.Slice((*byte)(unsafe.Pointer(&r.data[0])), n*4), u8)
		}
	case js.Global().Get("Array").Call("isArray", rows).Bool():
		r.data = make([]float32, rows.Length())
		for i := range r.data {
			r.data[i] = float32(rows.Index(i).Float())
		}
	default:
		return rawRows{}, badArg("webkv: %s: rows must be a Float32Array or number[], got %s", op, typeName(rows))
	}
	return r, nil
}

// rowShape is the shape of n rows of key k (its shape with n rows), or nil
// for an unknown key.
func (st *jsStore) rowShape(k kvcore.Key, n int) []int {
	st.mu.Lock()
	shape := st.shapes[k]
	st.mu.Unlock()
	if len(shape) == 0 {
		return nil
	}
	return append([]int{n}, shape[1:]...)
}

// pushRowSparse(key, {rows, rowIds} | {rows, rowIds}[]): resolves once the
// push (and what the store had queued before) is done; values of one call
// are summed row by row.
func (st *jsStore) pushRowSparse(args []js.Value) (enqueue, error) {
	const op = "pushRowSparse"
	k, err := toKey(op, arg(args, 0))
	if err != nil {
		return nil, err
	}
	v := arg(args, 1)
	var raws []rawRows
	if js.Global().Get("Array").Call("isArray", v).Bool() {
		for i := range v.Length() {
			r, err := parseRows(op, v.Index(i))
			if err != nil {
				return nil, err
			}
			raws = append(raws, r)
		}
	} else {
		r, err := parseRows(op, v)
		if err != nil {
			return nil, err
		}
		raws = append(raws, r)
	}
	return func() (work, error) {
		var vals []kvcore.RowSparse
		var arrs []*kvcore.Array
		for _, r := range raws {
			rs := kvcore.RowSparse{Rows: r.ids}
			if len(r.ids) > 0 {
				shape := st.rowShape(k, len(r.ids))
				if shape == nil || count(shape) != len(r.data) {
					shape = []int{len(r.data)} // kvcore names the mismatch (or the unknown key)
				}
				a, err := kvcore.FromSlice(kvcore.CPU(0), r.data, shape...)
				if err != nil {
					return nil, err
				}
				rs.Data = a
				arrs = append(arrs, a)
			}
			vals = append(vals, rs)
		}
		if err := st.s.PushRowSparse(k, vals...); err != nil {
			return nil, err
		}
		return func() (any, error) {
			err := st.s.WaitAll(st.ctx)
			for _, a := range arrs {
				_ = a.Release(st.ctx)
			}
			return js.Undefined(), st.settle(err)
		}, nil
	}, nil
}

// rowSparsePull(key, rowIds, out?): without out, resolves to {rows,
// rowIds}: the requested rows (sorted, without repeats, as MXNet's
// row_sparse_pull gives them) and their values; with out, a Float32Array
// of the key's size, the rows are written into it, every other row is
// zeroed, and it resolves to out.
func (st *jsStore) rowSparsePull(args []js.Value) (enqueue, error) {
	const op = "rowSparsePull"
	k, err := toKey(op, arg(args, 0))
	if err != nil {
		return nil, err
	}
	ids, err := toRowIDs(op, arg(args, 1))
	if err != nil {
		return nil, err
	}
	out := arg(args, 2)
	if !out.IsUndefined() && !out.IsNull() && !isInstance(out, "Float32Array") {
		return nil, badArg("webkv: %s: out must be a Float32Array, got %s", op, typeName(out))
	}
	return func() (work, error) {
		st.mu.Lock()
		shape := st.shapes[k]
		st.mu.Unlock()
		rs := &kvcore.RowSparse{}
		var a *kvcore.Array
		var err error
		switch {
		case shape == nil:
			// kvcore names the unknown key.
			return nil, st.s.RowSparsePull(k, rs, ids)
		case !out.IsUndefined() && !out.IsNull():
			if out.Length() != count(shape) {
				return nil, badArg("webkv: %s key %v: out has %d values, the key %d", op, k, out.Length(), count(shape))
			}
			a, err = hostArray(shape...)
		default:
			n := len(uniqueIDs(ids))
			if n > 0 {
				a, err = hostArray(append([]int{n}, shape[1:]...)...)
			}
		}
		if err != nil {
			return nil, err
		}
		rs.Data = a
		if err := st.s.RowSparsePull(k, rs, ids); err != nil {
			if a != nil {
				release(a)
			}
			return nil, err
		}
		return func() (any, error) {
			var vals []float32
			if a != nil {
				v, err := a.ToSlice(st.ctx)
				release(a)
				if err != nil {
					return nil, err
				}
				vals = v
			}
			if !out.IsUndefined() && !out.IsNull() {
				return float32sToJS(vals, out), nil
			}
			rowIDs := make([]any, len(rs.Rows))
			for i, r := range rs.Rows {
				rowIDs[i] = float64(r)
			}
			res := js.Global().Get("Object").New()
			res.Set("rows", float32sToJS(vals, js.Undefined()))
			res.Set("rowIds", js.ValueOf(rowIDs))
			return res, nil
		}, nil
	}, nil
}

// uniqueIDs is the sorted set of ids (the rows a pull returns).
func uniqueIDs(ids []int64) map[int64]bool {
	m := make(map[int64]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}
