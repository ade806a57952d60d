package store

import (
	"encoding/json"
	"fmt"
)

// GetJSON decodes the value at bucket/key; nil if there is none.
func GetJSON[T any](tx Tx, bucket, key string) (*T, error) {
	b := tx.Get(bucket, key)
	if b == nil {
		return nil, nil
	}
	v := new(T)
	if err := json.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("state %s/%s is corrupt: %w", bucket, key, err)
	}
	return v, nil
}

// PutJSON encodes v at bucket/key.
func PutJSON(tx Tx, bucket, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Put(bucket, key, b)
}

// ListJSON decodes every value under prefix, in key order.
func ListJSON[T any](tx Tx, bucket, prefix string) ([]T, error) {
	var out []T
	err := tx.ForEach(bucket, prefix, func(k string, b []byte) error {
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("state %s/%s is corrupt: %w", bucket, k, err)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

// Corrupt is a record that does not decode.
type Corrupt struct {
	Bucket, Key string
	Err         error
}

func (c Corrupt) String() string {
	return fmt.Sprintf("state %s/%s is corrupt: %v", c.Bucket, c.Key, c.Err)
}

// ListJSONLenient is ListJSON that goes past records that do not decode and
// returns them apart, for the repairs that must not stop at one bad record.
func ListJSONLenient[T any](tx Tx, bucket, prefix string) ([]T, []Corrupt, error) {
	var out []T
	var bad []Corrupt
	err := tx.ForEach(bucket, prefix, func(k string, b []byte) error {
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			bad = append(bad, Corrupt{bucket, k, err})
			return nil
		}
		out = append(out, v)
		return nil
	})
	return out, bad, err
}
