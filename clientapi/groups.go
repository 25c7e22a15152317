package clientapi

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/parleychat/parley/wire"
)

func (a *API) groupRoutes(v1 *echo.Group) {
	auth := a.authenticate
	v1.POST("/groups", a.createGroup, auth)
	v1.GET("/groups", a.listGroups, auth)
	v1.GET("/groups/:id", a.getGroup, auth)
	v1.PUT("/groups/:id", a.updateGroup, auth)
	v1.DELETE("/groups/:id", a.deleteGroup, auth)
	v1.GET("/groups/:id/devices", a.groupDevices, auth)
	v1.POST("/groups/:id/members", a.addMembers, auth)
	v1.DELETE("/groups/:id/members/:user", a.removeMember, auth)
	v1.PUT("/groups/:id/members/:user/role", a.setRole, auth)
	v1.POST("/groups/:id/invites", a.invite, auth)
	v1.POST("/groups/:id/join", a.acceptInvite, auth)
	v1.POST("/groups/:id/decline", a.declineInvite, auth)
	v1.POST("/groups/:id/owner", a.transferOwner, auth)
}

func (a *API) createGroup(c echo.Context) error {
	var req wire.CreateGroupRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	g, err := a.hs.CreateGroup(c.Request().Context(), callerOf(c), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, g)
}

func (a *API) listGroups(c echo.Context) error {
	l, err := a.hs.ListGroups(c.Request().Context(), callerOf(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, l)
}

func (a *API) getGroup(c echo.Context) error {
	g, err := a.hs.GetGroup(c.Request().Context(), callerOf(c), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, g)
}

func (a *API) updateGroup(c echo.Context) error {
	var req wire.GroupMeta
	if err := decode(c, &req); err != nil {
		return err
	}
	ctx, caller := c.Request().Context(), callerOf(c)
	if err := a.hs.UpdateGroupMeta(ctx, caller, c.Param("id"), req); err != nil {
		return err
	}
	return a.getGroup(c)
}

func (a *API) deleteGroup(c echo.Context) error {
	return noContent(c, a.hs.DeleteGroup(c.Request().Context(), callerOf(c), c.Param("id")))
}

func (a *API) groupDevices(c echo.Context) error {
	d, err := a.hs.GroupDevices(c.Request().Context(), callerOf(c), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

func (a *API) addMembers(c echo.Context) error {
	var req wire.GroupUsersRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	if err := a.hs.AddMembers(c.Request().Context(), callerOf(c), c.Param("id"), req.Users); err != nil {
		return err
	}
	return a.getGroup(c)
}

func (a *API) removeMember(c echo.Context) error {
	return noContent(c, a.hs.RemoveMember(c.Request().Context(), callerOf(c), c.Param("id"), c.Param("user")))
}

func (a *API) setRole(c echo.Context) error {
	var req wire.RoleRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	return noContent(c, a.hs.SetRole(c.Request().Context(), callerOf(c), c.Param("id"), c.Param("user"), req.Role))
}

func (a *API) invite(c echo.Context) error {
	var req wire.GroupUsersRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	return noContent(c, a.hs.Invite(c.Request().Context(), callerOf(c), c.Param("id"), req.Users))
}

func (a *API) acceptInvite(c echo.Context) error {
	return noContent(c, a.hs.Accept(c.Request().Context(), callerOf(c), c.Param("id")))
}

func (a *API) declineInvite(c echo.Context) error {
	return noContent(c, a.hs.Decline(c.Request().Context(), callerOf(c), c.Param("id")))
}

func (a *API) transferOwner(c echo.Context) error {
	var req wire.OwnerRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	return noContent(c, a.hs.TransferOwner(c.Request().Context(), callerOf(c), c.Param("id"), req.User))
}

// noContent answers 204 when err is nil.
func noContent(c echo.Context, err error) error {
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
