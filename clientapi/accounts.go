package clientapi

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/parleychat/parley/wire"
)

func (a *API) register(c echo.Context) error {
	var req wire.RegisterRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	s, err := a.hs.Register(c.Request().Context(), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, s)
}

func (a *API) login(c echo.Context) error {
	var req wire.LoginRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	s, err := a.hs.Login(c.Request().Context(), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s)
}

// logout removes the calling device, as Matrix does: its token, keys and
// inbox go with it.
func (a *API) logout(c echo.Context) error {
	caller := callerOf(c)
	if err := a.hs.RemoveDevice(c.Request().Context(), caller, caller.DeviceID, ""); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (a *API) whoami(c echo.Context) error {
	caller := callerOf(c)
	return c.JSON(http.StatusOK, wire.WhoAmI{UserID: caller.UserID, DeviceID: caller.DeviceID})
}

func (a *API) devices(c echo.Context) error {
	devs, err := a.hs.Devices(c.Request().Context(), callerOf(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, wire.DeviceList{Devices: devs})
}

func (a *API) removeDevice(c echo.Context) error {
	id, err := deviceParam(c.Param("id"))
	if err != nil {
		return err
	}
	var req wire.RemoveDeviceRequest
	if c.Request().ContentLength != 0 {
		if err := decode(c, &req); err != nil {
			return err
		}
	}
	if err := a.hs.RemoveDevice(c.Request().Context(), callerOf(c), id, req.Password); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (a *API) userDevices(c echo.Context) error {
	d, err := a.hs.UserDevices(c.Request().Context(), c.Param("user"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

func (a *API) profile(c echo.Context) error {
	p, err := a.hs.Profile(c.Request().Context(), c.Param("user"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

func (a *API) setProfile(c echo.Context) error {
	var req wire.Profile
	if err := decode(c, &req); err != nil {
		return err
	}
	p, err := a.hs.SetDisplayName(c.Request().Context(), callerOf(c), req.DisplayName)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

func deviceParam(s string) (uint32, error) {
	id, err := strconv.ParseUint(s, 10, 32)
	if err != nil || id == 0 {
		return 0, &wire.Error{Code: wire.CodeInvalidParam, Field: "id", Message: "a device id is a positive integer"}
	}
	return uint32(id), nil
}
