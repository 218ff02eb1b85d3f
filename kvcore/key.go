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

// StrKeys returns string keys for each of names, as Keys does for ints.
func StrKeys(names ...string) []Key {
	ks := make([]Key, len(names))
	for j, n := range names {
		ks[j] = StrKey(n)
	}
	return ks
}

// IsString reports whether k is a string key.
func (k Key) IsString() bool { return k.isStr }

// Int returns the int value of an int key (0 for a string key).
func (k Key) Int() int { return k.i }

// Str returns the string value of a string key ("" for an int key).
func (k Key) Str() string { return k.s }

// Name is the key as text without quotes: "3" for int key 3, "w0" for
// string key "w0"; optimizer specs name keys this way (lr_mult, wd_mult).
func (k Key) Name() string {
	if k.isStr {
		return k.s
	}
	return strconv.Itoa(k.i)
}

// String formats the key as MXNet's messages do: 3 or "w0".
func (k Key) String() string {
	if k.isStr {
		return strconv.Quote(k.s)
	}
	return strconv.Itoa(k.i)
}
