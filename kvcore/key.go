package kvcore

import "strconv"

// Key names a value in a store. A store takes int keys or string keys, never
// both: the first key used fixes the kind (MXNet's rule).
//
// Key is a small comparable value so that passing it allocates nothing.
type Key struct {
	s     string
	i     int
	isStr bool
}

// IntKey returns the int key i.
func IntKey(i int) Key { return Key{i: i} }

// StrKey returns the string key s.
func StrKey(s string) Key { return Key{s: s, isStr: true} }

// Keys returns int keys for each of ids, a convenience for list calls.
func Keys(ids ...int) []Key {
	ks := make([]Key, len(ids))
	for j, id := range ids {
		ks[j] = IntKey(id)
	}
	return ks
}

// IsString reports whether k is a string key.
func (k Key) IsString() bool { return k.isStr }

// Int returns the int value of an int key (0 for a string key).
func (k Key) Int() int { return k.i }

// Str returns the string value of a string key ("" for an int key).
func (k Key) Str() string { return k.s }

// String formats the key as MXNet's messages do: 3 or "w0".
func (k Key) String() string {
	if k.isStr {
		return strconv.Quote(k.s)
	}
	return strconv.Itoa(k.i)
}
