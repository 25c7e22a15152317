package clientapi

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/parleychat/parley/wire"
)

func (a *API) uploadKeys(c echo.Context) error {
	var req wire.KeyUpload
	if err := decode(c, &req); err != nil {
		return err
	}
	n, err := a.hs.UploadKeys(c.Request().Context(), callerOf(c), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, wire.PreKeyCount{Count: n})
}

func (a *API) preKeyCount(c echo.Context) error {
	n, err := a.hs.PreKeyCount(c.Request().Context(), callerOf(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, wire.PreKeyCount{Count: n})
}

func (a *API) claim(c echo.Context) error {
	var req wire.ClaimRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	b, err := a.hs.Claim(c.Request().Context(), callerOf(c), req)
	if err != nil {
		return err
	}
	if b == nil {
		b = []wire.Bundle{}
	}
	return c.JSON(http.StatusOK, wire.ClaimResponse{Bundles: b})
}
