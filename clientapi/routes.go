package clientapi

import (
	"sort"

	"github.com/labstack/echo/v4"
)

// Route is one registered endpoint: an HTTP method and echo's path
// pattern, e.g. {"DELETE", "/v1/groups/:id/members/:user"}.
type Route struct {
	Method string
	Path   string
}

func (r Route) String() string { return r.Method + " " + r.Path }

// Routes lists every endpoint the API serves, as registered with echo,
// sorted. Tests build their tables from it (the authorization matrix
// fails for a route without an entry), so a new endpoint cannot slip in
// untested.
func (a *API) Routes() []Route {
	var out []Route
	for _, r := range a.echo.Routes() {
		if r.Method == echo.RouteNotFound {
			continue
		}
		out = append(out, Route{Method: r.Method, Path: r.Path})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Method < out[j].Method
	})
	return out
}
