package ovsdb

import (
	"encoding/json"
	"fmt"
)

// Schema is a database schema (RFC 7047 3.2).
type Schema struct {
	Name     string                 `json:"name"`
	Version  string                 `json:"version"`
	Checksum string                 `json:"cksum"`
	Tables   map[string]TableSchema `json:"tables"`
}

// TableSchema describes one table.
type TableSchema struct {
	Columns map[string]ColumnSchema `json:"columns"`
	MaxRows int                     `json:"maxRows"`
	IsRoot  bool                    `json:"isRoot"`
	Indexes [][]string              `json:"indexes"`
}

// ColumnSchema describes one column.
type ColumnSchema struct {
	Type      ColumnType `json:"type"`
	Ephemeral bool       `json:"ephemeral"`
	Mutable   *bool      `json:"mutable"` // nil: mutable (the default)
}

// Unlimited is ColumnType.Max for sets and maps without a bound.
const Unlimited = -1

// ColumnType is a column's type: Key (and Value, for a map) with Min..Max
// elements; an atom column has Min = Max = 1.
type ColumnType struct {
	Key   BaseType
	Value *BaseType
	Min   int
	Max   int
}

// BaseType is the type of a key or value with its constraints.
type BaseType struct {
	Type       string   `json:"type"` // integer, real, boolean, string, uuid
	Enum       Set      `json:"-"`
	MinInteger *int64   `json:"minInteger"`
	MaxInteger *int64   `json:"maxInteger"`
	MinReal    *float64 `json:"minReal"`
	MaxReal    *float64 `json:"maxReal"`
	MinLength  *int     `json:"minLength"`
	MaxLength  *int     `json:"maxLength"`
	RefTable   string   `json:"refTable"`
	RefType    string   `json:"refType"` // strong (the default) or weak
}

func (t *ColumnType) UnmarshalJSON(b []byte) error {
	var atomic string
	if json.Unmarshal(b, &atomic) == nil {
		*t = ColumnType{Key: BaseType{Type: atomic}, Min: 1, Max: 1}
		return nil
	}
	var raw struct {
		Key   BaseType        `json:"key"`
		Value *BaseType       `json:"value"`
		Min   *int            `json:"min"`
		Max   json.RawMessage `json:"max"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*t = ColumnType{Key: raw.Key, Value: raw.Value, Min: 1, Max: 1}
	if raw.Min != nil {
		t.Min = *raw.Min
	}
	if len(raw.Max) > 0 {
		var s string
		if json.Unmarshal(raw.Max, &s) == nil {
			if s != "unlimited" {
				return fmt.Errorf("ovsdb schema: max %q", s)
			}
			t.Max = Unlimited
		} else if err := json.Unmarshal(raw.Max, &t.Max); err != nil {
			return fmt.Errorf("ovsdb schema: max %s", raw.Max)
		}
	}
	return nil
}

func (bt *BaseType) UnmarshalJSON(b []byte) error {
	var atomic string
	if json.Unmarshal(b, &atomic) == nil {
		*bt = BaseType{Type: atomic}
		return nil
	}
	type plain BaseType
	var raw struct {
		plain
		Enum json.RawMessage `json:"enum"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*bt = BaseType(raw.plain)
	if len(raw.Enum) > 0 {
		v, err := decodeValue(raw.Enum)
		if err != nil {
			return fmt.Errorf("ovsdb schema: enum: %w", err)
		}
		if s, ok := v.(Set); ok {
			bt.Enum = s
		} else {
			bt.Enum = Set{v}
		}
	}
	return nil
}

// Column returns the schema of table.column, or false.
func (s *Schema) Column(table, column string) (ColumnSchema, bool) {
	t, ok := s.Tables[table]
	if !ok {
		return ColumnSchema{}, false
	}
	c, ok := t.Columns[column]
	return c, ok
}
