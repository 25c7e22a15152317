package homeserver

import (
	"errors"
	"fmt"

	"github.com/parleychat/parley/wire"
)

// Error is a refusal the caller can act on: Code is one of the stable wire
// codes (wire/codes.go). The transport (clientapi/) chooses the HTTP status
// from the code; Cause is for logs only and never reaches a client.
type Error struct {
	Code    string
	Message string
	Field   string
	Missing []wire.DeviceAddress
	Extra   []wire.DeviceAddress
	Cause   error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Cause)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Cause }

func refuse(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func invalid(field, format string, args ...any) *Error {
	return &Error{Code: wire.CodeInvalidParam, Field: field, Message: fmt.Sprintf(format, args...)}
}

// AsError returns the *Error inside err, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
