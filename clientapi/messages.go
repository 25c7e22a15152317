package clientapi

import (
	"bytes"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/parleychat/parley/wire"
)

func (a *API) send(c echo.Context) error {
	var req wire.SendRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	res, err := a.hs.Send(c.Request().Context(), callerOf(c), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

// inbox serves GET /v1/inbox?after=ID&limit=N. The events are stored
// encoded, so the page is assembled from their bytes.
func (a *API) inbox(c echo.Context) error {
	after, limit := int64(0), 100
	if s := c.QueryParam("after"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			return &wire.Error{Code: wire.CodeInvalidParam, Field: "after", Message: "after is a non-negative event id"}
		}
		after = v
	}
	if s := c.QueryParam("limit"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > 1000 {
			return &wire.Error{Code: wire.CodeInvalidParam, Field: "limit", Message: "limit is 1 to 1000"}
		}
		limit = v
	}
	events, more, err := a.hs.Inbox(c.Request().Context(), callerOf(c), after, limit)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	b.WriteString(`{"events":[`)
	for i, e := range events {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(e.JSON())
	}
	b.WriteString(`],"more":`)
	b.WriteString(strconv.FormatBool(more))
	b.WriteString("}")
	return c.JSONBlob(http.StatusOK, b.Bytes())
}

func (a *API) ack(c echo.Context) error {
	var req wire.AckRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	if err := a.hs.Ack(c.Request().Context(), callerOf(c), req.IDs); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (a *API) read(c echo.Context) error {
	var req wire.ReadRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	if err := a.hs.MarkRead(c.Request().Context(), callerOf(c), req); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
