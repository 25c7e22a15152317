package clientapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/parleychat/parley/homeserver"
	"github.com/parleychat/parley/wire"
)

// StatusOf returns the HTTP status of an error code (wire.HTTPStatus).
func StatusOf(code string) int { return wire.HTTPStatus(code) }

// statusClientClosed is what nginx logs for a request the client gave up on.
const statusClientClosed = 499

// toWire turns any error into the body a client sees and the cause to log.
// Only homeserver.Error messages reach clients; anything else is "internal".
func toWire(err error) (wire.Error, error) {
	if e, ok := homeserver.AsError(err); ok {
		return wire.Error{Code: e.Code, Message: e.Message, Field: e.Field, Missing: e.Missing, Extra: e.Extra}, e.Cause
	}
	var we *wire.Error
	if errors.As(err, &we) {
		return *we, nil
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		switch he.Code {
		case http.StatusNotFound:
			return wire.Error{Code: wire.CodeNotFound, Message: "no such endpoint"}, nil
		case http.StatusMethodNotAllowed:
			return wire.Error{Code: wire.CodeMethodNotAllowed, Message: "method not allowed on this endpoint"}, nil
		case http.StatusRequestEntityTooLarge:
			return wire.Error{Code: wire.CodeTooLarge, Message: "request body too large"}, nil
		}
	}
	return wire.Error{Code: wire.CodeInternal, Message: "internal error"}, err
}

// errorHandler is the one exit point for errors: it logs the private cause
// once and sends the code.
func (a *API) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	ctx := c.Request().Context()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		c.NoContent(statusClientClosed)
		return
	}
	body, cause := toWire(err)
	status := StatusOf(body.Code)
	if cause != nil || status >= 500 {
		a.log.ErrorContext(ctx, "request failed", "route", c.Path(), "method", c.Request().Method,
			"code", body.Code, "err", cause)
	}
	if c.Request().Method == http.MethodHead {
		c.NoContent(status)
		return
	}
	if err := c.JSON(status, body); err != nil {
		a.log.DebugContext(ctx, "writing error response", "err", err)
	}
}
