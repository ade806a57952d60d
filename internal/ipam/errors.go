// Package ipam plans and allocates container addresses: automatic subnets from
// Docker's default pools, one network's subnet/gateway/ip-range/aux-address plan,
// and round-robin address allocation. It is pure logic: callers supply what is
// in use (host routes, other networks, leases) as values or callbacks.
package ipam

import (
	"errors"
	"fmt"
	"net/netip"
)

// Sentinel kinds for errors.Is. Error texts are complete sentences of their own;
// the kinds only classify them.
var (
	// ErrInvalid: a subnet, gateway, ip-range or aux-address was malformed or inconsistent.
	ErrInvalid = errors.New("invalid address plan")
	// ErrOutside: an address is not in the subnet (or not in its family).
	ErrOutside = errors.New("address outside subnet")
	// ErrReserved: an address is the network, broadcast, subnet-router anycast,
	// gateway or an aux address.
	ErrReserved = errors.New("address reserved")
	// ErrInUse: an address is held by another endpoint. ipam never decides this
	// itself; callers wrap it with InUse.
	ErrInUse = errors.New("address in use")
	// ErrExhausted: no free address in a subnet, or no free subnet in the pools.
	ErrExhausted = errors.New("exhausted")
)

// kindError is an error whose text stands alone but still matches a sentinel.
type kindError struct {
	msg  string
	kind error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

func errorf(kind error, format string, args ...any) error {
	return &kindError{msg: fmt.Sprintf(format, args...), kind: kind}
}

// InUse is the error for a requested address someone else holds:
// "address 10.1.0.5 is already in use by web-1"; errors.Is(err, ErrInUse) holds.
func InUse(a netip.Addr, by string) error {
	return errorf(ErrInUse, "address %s is already in use by %s", a, by)
}
