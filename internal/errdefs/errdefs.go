// Package errdefs gives ctnet's failures a kind and, for bad input, the field
// of the request at fault, so that each front end words them in its own terms:
// the command line in flags, the CNI plugin in its error codes and config
// keys, the Docker driver in its JSON.
package errdefs

import (
	"errors"
	"strings"
)

// Kind says what sort of failure an Error is.
type Kind int

const (
	// Invalid: the request is wrong; nothing was changed.
	Invalid Kind = iota + 1
	// NotFound: an object the request names does not exist.
	NotFound
	// Conflict: the request collides with what exists (a name, an
	// address or a port in use, an object still in use).
	Conflict
	// Unavailable: it may work later (state locked, store unreachable).
	Unavailable
)

func (k Kind) String() string {
	switch k {
	case Invalid:
		return "invalid"
	case NotFound:
		return "not found"
	case Conflict:
		return "conflict"
	case Unavailable:
		return "unavailable"
	}
	return "error"
}

// FieldToken stands for the field's name in Msg; front ends put their own
// wording of it there (Format).
const FieldToken = "{field}"

// Error is one failure, worded without naming any front end's flags.
type Error struct {
	Kind Kind
	// Field is the request field at fault ("subnet", "ip", "ifname",
	// "option:com.docker.network.bridge.name", …), if any.
	Field string
	// Msg says what is wrong and what to do; FieldToken marks where the
	// field's name goes.
	Msg string
	Err error // cause, if any
}

func (e *Error) Error() string { return e.Format(nil) }
func (e *Error) Unwrap() error { return e.Err }

// Format words the error with name(field) in place of FieldToken; a nil
// name uses the field as it is.
func (e *Error) Format(name func(field string) string) string {
	f := e.Field
	if name != nil {
		f = name(e.Field)
	}
	return strings.ReplaceAll(e.Msg, FieldToken, f)
}

// New makes an error of a kind, without a field.
func New(kind Kind, msg string) *Error { return &Error{Kind: kind, Msg: msg} }

// Field makes an Invalid error about one field of the request.
func Field(field, msg string) *Error { return &Error{Kind: Invalid, Field: field, Msg: msg} }

// KindOf returns the kind of the first Error in err's chain, 0 if none.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

// Is reports whether err is (or wraps) an Error of kind k.
func Is(err error, k Kind) bool { return KindOf(err) == k }

// Word renders err's whole message with every Error in it worded by name,
// keeping what wrapping added around them ("container \"x\": …").
func Word(err error, name func(field string) string) string {
	msg := err.Error()
	for e := err; e != nil; {
		var de *Error
		if !errors.As(e, &de) {
			break
		}
		if plain := de.Error(); plain != "" {
			msg = strings.Replace(msg, plain, de.Format(name), 1)
		}
		e = de.Err
	}
	return msg
}
