package wire

import "net/http"

// statusOf is the one table from error code to HTTP status. A code's status
// never changes once released; TestErrorStatuses pins the table (wire/codes_test.go).
var statusOf = map[string]int{
	CodeBadJSON:          http.StatusBadRequest,
	CodeInvalidParam:     http.StatusBadRequest,
	CodeTooLarge:         http.StatusRequestEntityTooLarge,
	CodeMissingToken:     http.StatusUnauthorized,
	CodeUnknownToken:     http.StatusUnauthorized,
	CodeForbidden:        http.StatusForbidden,
	CodeBadCredentials:   http.StatusForbidden,
	CodeInvalidUsername:  http.StatusBadRequest,
	CodeWeakPassword:     http.StatusBadRequest,
	CodeUserInUse:        http.StatusConflict,
	CodeUnknownUser:      http.StatusNotFound,
	CodeUnknownDevice:    http.StatusNotFound,
	CodeNotFound:         http.StatusNotFound,
	CodeBadSignature:     http.StatusBadRequest,
	CodeBadKey:           http.StatusBadRequest,
	CodeKeysRequired:     http.StatusBadRequest,
	CodeTooManyPreKeys:   http.StatusBadRequest,
	CodeStaleDevices:     http.StatusConflict,
	CodeClientIDReused:   http.StatusConflict,
	CodeUnsupported:      http.StatusNotImplemented,
	CodeRateLimited:      http.StatusTooManyRequests,
	CodeMethodNotAllowed: http.StatusMethodNotAllowed,
	CodeUnknownGroup:     http.StatusNotFound,
	CodeNotMember:        http.StatusForbidden,
	CodeAlreadyMember:    http.StatusConflict,
	CodeLastOwner:        http.StatusConflict,
	CodeGroupFull:        http.StatusConflict,
	CodeNotInvited:       http.StatusForbidden,
	CodeUnauthenticated:  http.StatusUnauthorized,
	CodeReplayed:         http.StatusConflict,
	CodeWrongDestination: http.StatusMisdirectedRequest,
	CodeBadDigest:        http.StatusBadRequest,
	CodeInternal:         http.StatusInternalServerError,
	CodeUnavailable:      http.StatusServiceUnavailable,
}

// HTTPStatus returns the HTTP status of an error code; unknown codes are
// 500.
func HTTPStatus(code string) int {
	if s, ok := statusOf[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}
