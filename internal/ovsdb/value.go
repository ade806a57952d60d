package ovsdb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
)

// OVSDB's wire values (RFC 7047 5.1): an atom is an integer (int64), a real
// (float64), a boolean, a string, a UUID or a named UUID; a Set and a Map
// hold atoms. Decoded rows use exactly these Go types.

// UUID is a row's identity, ["uuid", "…"] on the wire.
type UUID string

// NamedUUID names a row inserted earlier in the same transaction (the
// insert's UUIDName), ["named-uuid", "…"] on the wire.
type NamedUUID string

// Set is an OVSDB set, ["set", […]] on the wire.
type Set []any

// Map is an OVSDB map, ["map", [[k, v]…]] on the wire; keys are atoms.
type Map map[any]any

// Row is a table row: column name to value.
type Row map[string]any

// StringSet makes a Set of strings.
func StringSet(s ...string) Set {
	out := make(Set, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// UUIDSet makes a Set of UUIDs (or named UUIDs).
func UUIDSet[T UUID | NamedUUID](u ...T) Set {
	out := make(Set, len(u))
	for i, v := range u {
		out[i] = v
	}
	return out
}

// StringMap makes a Map of strings.
func StringMap(m map[string]string) Map {
	out := make(Map, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (u UUID) MarshalJSON() ([]byte, error) {
	return json.Marshal([2]string{"uuid", string(u)})
}

func (u NamedUUID) MarshalJSON() ([]byte, error) {
	return json.Marshal([2]string{"named-uuid", string(u)})
}

func (s Set) MarshalJSON() ([]byte, error) {
	elems := make([]json.RawMessage, len(s))
	for i, a := range s {
		b, err := marshalAtom(a)
		if err != nil {
			return nil, err
		}
		elems[i] = b
	}
	return json.Marshal([]any{"set", elems})
}

func (m Map) MarshalJSON() ([]byte, error) {
	type pair struct {
		sort string
		k, v json.RawMessage
	}
	pairs := make([]pair, 0, len(m))
	for k, v := range m {
		kb, err := marshalAtom(k)
		if err != nil {
			return nil, err
		}
		vb, err := marshalAtom(v)
		if err != nil {
			return nil, err
		}
		pairs = append(pairs, pair{string(kb), kb, vb})
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i].sort < pairs[j].sort })
	out := make([][2]json.RawMessage, len(pairs))
	for i, p := range pairs {
		out[i] = [2]json.RawMessage{p.k, p.v}
	}
	return json.Marshal([]any{"map", out})
}

// marshalAtom encodes one atom, refusing what OVSDB has no atom for.
func marshalAtom(a any) (json.RawMessage, error) {
	switch a.(type) {
	case string, bool, int, int8, int16, int32, int64, uint8, uint16, uint32,
		float32, float64, UUID, NamedUUID:
		return json.Marshal(a)
	}
	return nil, fmt.Errorf("ovsdb: %T (%v) is not an OVSDB atom", a, a)
}

// marshalValue encodes a column value: an atom, a Set or a Map.
func marshalValue(v any) (json.RawMessage, error) {
	switch v.(type) {
	case Set, Map:
		return json.Marshal(v)
	}
	return marshalAtom(v)
}

func (r Row) MarshalJSON() ([]byte, error) {
	out := make(map[string]json.RawMessage, len(r))
	for col, v := range r {
		b, err := marshalValue(v)
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", col, err)
		}
		out[col] = b
	}
	return json.Marshal(out)
}

func (r *Row) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*r = make(Row, len(raw))
	for col, rv := range raw {
		v, err := decodeValue(rv)
		if err != nil {
			return fmt.Errorf("column %s: %w", col, err)
		}
		(*r)[col] = v
	}
	return nil
}

// decodeValue turns a JSON value of OVSDB's notation into the Go types above.
func decodeValue(b json.RawMessage) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return convert(v)
}

func convert(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i, nil
		}
		return x.Float64()
	case string, bool:
		return x, nil
	case []any:
		if len(x) != 2 {
			return nil, fmt.Errorf("ovsdb: malformed value %v", x)
		}
		tag, _ := x[0].(string)
		switch tag {
		case "uuid", "named-uuid":
			s, ok := x[1].(string)
			if !ok {
				return nil, fmt.Errorf("ovsdb: malformed %s %v", tag, x[1])
			}
			if tag == "uuid" {
				return UUID(s), nil
			}
			return NamedUUID(s), nil
		case "set":
			elems, ok := x[1].([]any)
			if !ok {
				return nil, fmt.Errorf("ovsdb: malformed set %v", x[1])
			}
			out := make(Set, len(elems))
			for i, e := range elems {
				a, err := convert(e)
				if err != nil {
					return nil, err
				}
				out[i] = a
			}
			return out, nil
		case "map":
			pairs, ok := x[1].([]any)
			if !ok {
				return nil, fmt.Errorf("ovsdb: malformed map %v", x[1])
			}
			out := make(Map, len(pairs))
			for _, p := range pairs {
				kv, ok := p.([]any)
				if !ok || len(kv) != 2 {
					return nil, fmt.Errorf("ovsdb: malformed map pair %v", p)
				}
				k, err := convert(kv[0])
				if err != nil {
					return nil, err
				}
				val, err := convert(kv[1])
				if err != nil {
					return nil, err
				}
				out[k] = val
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("ovsdb: unexpected value %v", v)
}

// UUID is the row's _uuid ("" when not selected).
func (r Row) UUID() UUID {
	u, _ := r["_uuid"].(UUID)
	return u
}

// Set returns a column as a set: an atom is a set of one (the wire form
// OVSDB allows for sets of exactly one element).
func (r Row) Set(col string) Set {
	switch v := r[col].(type) {
	case nil:
		return nil
	case Set:
		return v
	case Map:
		return nil
	default:
		return Set{v}
	}
}

// String returns a string column, or the element of an optional one ("" if
// empty).
func (r Row) String(col string) string {
	if s := r.Set(col); len(s) == 1 {
		v, _ := s[0].(string)
		return v
	}
	return ""
}

// Int returns an integer column, or the element of an optional one; ok is
// false when it is empty.
func (r Row) Int(col string) (v int64, ok bool) {
	if s := r.Set(col); len(s) == 1 {
		v, ok = s[0].(int64)
	}
	return v, ok
}

// Bool returns a boolean column (false if empty).
func (r Row) Bool(col string) bool {
	if s := r.Set(col); len(s) == 1 {
		v, _ := s[0].(bool)
		return v
	}
	return false
}

// Strings returns a set-of-strings column.
func (r Row) Strings(col string) []string {
	var out []string
	for _, a := range r.Set(col) {
		if s, ok := a.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// Ints returns a set-of-integers column.
func (r Row) Ints(col string) []int64 {
	var out []int64
	for _, a := range r.Set(col) {
		if i, ok := a.(int64); ok {
			out = append(out, i)
		}
	}
	return out
}

// UUIDs returns a set-of-UUIDs column.
func (r Row) UUIDs(col string) []UUID {
	var out []UUID
	for _, a := range r.Set(col) {
		if u, ok := a.(UUID); ok {
			out = append(out, u)
		}
	}
	return out
}

// StringMap returns a string-to-string map column.
func (r Row) StringMap(col string) map[string]string {
	m, _ := r[col].(Map)
	out := make(map[string]string, len(m))
	for k, v := range m {
		ks, ok1 := k.(string)
		vs, ok2 := v.(string)
		if ok1 && ok2 {
			out[ks] = vs
		}
	}
	return out
}
