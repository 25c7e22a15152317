// Package clientapi is Parley's client-facing HTTP API: REST endpoints
// under /v1 (echo) and one WebSocket per device (gorilla/websocket). It
// parses and authenticates requests, calls homeserver/ and maps its errors
// to stable codes; it holds no rules and no SQL.
package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/parleychat/parley/homeserver"
	"github.com/parleychat/parley/wire"
)

// Options tune the API.
type Options struct {
	// PingInterval is how often idle sockets are pinged (default 30s); a
	// socket silent for 2.5 intervals is closed.
	PingInterval time.Duration
	// WriteTimeout bounds one socket write; a client that does not read
	// is dropped after it (default 10s).
	WriteTimeout time.Duration
	// MaxPending bounds the committed events handed to one socket and not
	// yet written (default 1024); past it the socket reads them back from
	// storage instead, so a slow reader holds no memory.
	MaxPending int
}

// API serves the client protocol.
type API struct {
	ctx    context.Context // lives as long as the API; sockets' work runs under it
	hs     *homeserver.Server
	log    *slog.Logger
	opts   Options
	echo   *echo.Echo
	hub    *hub
	poller *poller // nil: idle sockets keep their reader goroutine
}

// New builds the API and registers it as hs's notifier. ctx bounds the
// work sockets do after their HTTP handler has returned.
func New(ctx context.Context, hs *homeserver.Server, log *slog.Logger, opts Options) *API {
	if opts.PingInterval <= 0 {
		opts.PingInterval = 30 * time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 1024
	}
	a := &API{ctx: ctx, hs: hs, log: log, opts: opts}
	a.hub = newHub(a)
	a.poller = newPoller(ctx, log)
	hs.SetNotifier(a.hub)

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = a.errorHandler
	e.Use(a.securityHeaders, a.accessLog, a.limitBody)
	a.echo = e
	a.routes()
	return a
}

// Handler is the HTTP handler to serve.
func (a *API) Handler() http.Handler { return a.echo }

// Run pings sockets until ctx ends, then closes them all.
func (a *API) Run(ctx context.Context) {
	a.hub.run(ctx)
}

// Sockets is the number of connected WebSockets.
func (a *API) Sockets() int { return a.hub.count() }

// SocketInboxReads counts the inbox reads sockets made from storage: one
// per connect to catch up, more only for sockets that fell behind. Live
// events are handed over by the commit path and not read back.
func (a *API) SocketInboxReads() int64 { return a.hub.reads.Load() }

// SocketWriterStarts counts the goroutines started to write to sockets: one
// per burst of events to a socket, a busy socket's lasting until it has
// been idle for a second.
func (a *API) SocketWriterStarts() int64 { return a.hub.drains.Load() }

// routes registers every endpoint. Authentication is per route (not a
// group middleware) so that an unknown path answers not_found, not
// missing_token.
func (a *API) routes() {
	v1 := a.echo.Group(wire.APIVersion)
	v1.POST("/register", a.register)
	v1.POST("/login", a.login)

	auth := a.authenticate
	v1.POST("/logout", a.logout, auth)
	v1.GET("/whoami", a.whoami, auth)
	v1.GET("/devices", a.devices, auth)
	v1.DELETE("/devices/:id", a.removeDevice, auth)
	v1.GET("/users/:user/devices", a.userDevices, auth)
	v1.GET("/profile/:user", a.profile, auth)
	v1.PUT("/profile", a.setProfile, auth)
	v1.PUT("/keys", a.uploadKeys, auth)
	v1.GET("/keys/count", a.preKeyCount, auth)
	v1.POST("/keys/claim", a.claim, auth)
	v1.POST("/messages", a.send, auth)
	v1.GET("/inbox", a.inbox, auth)
	v1.POST("/inbox/ack", a.ack, auth)
	v1.POST("/read", a.read, auth)
	v1.GET("/ws", a.socket, auth)
	a.groupRoutes(v1)
}

const callerKey = "parley.caller"

// authenticate accepts "Authorization: Bearer TOKEN" or, for browsers'
// WebSockets (which cannot set headers), ?access_token=TOKEN.
func (a *API) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		caller, err := a.hs.Authenticate(c.Request().Context(), bearer(c.Request()))
		if err != nil {
			return err
		}
		c.Set(callerKey, caller)
		return next(c)
	}
}

func bearer(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
		return ""
	}
	return r.URL.Query().Get("access_token")
}

func callerOf(c echo.Context) homeserver.Caller { return c.Get(callerKey).(homeserver.Caller) }

// limitBody caps request bodies; decode reports the overflow as too_large.
func (a *API) limitBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.ContentLength > wire.MaxRequestBytes {
			return &wire.Error{Code: wire.CodeTooLarge, Message: "request body too large"}
		}
		r.Body = http.MaxBytesReader(c.Response(), r.Body, wire.MaxRequestBytes)
		return next(c)
	}
}

// securityHeaders go on every answer, errors included (so it runs first):
// the API serves JSON only, which no browser should sniff, cache, frame or
// run scripts from; over TLS, browsers are told to stay on HTTPS.
func (a *API) securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		if c.Request().TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		return next(c)
	}
}

// decode reads one JSON value into v, refusing trailing data, wrong types
// and oversized bodies with stable codes.
func decode(c echo.Context, v any) error {
	dec := json.NewDecoder(c.Request().Body)
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if dec.More() {
		return &wire.Error{Code: wire.CodeBadJSON, Message: "trailing data after the JSON body"}
	}
	return nil
}

func decodeError(err error) error {
	var tooBig *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		return &wire.Error{Code: wire.CodeTooLarge, Message: "request body too large"}
	case errors.As(err, &typeErr):
		return &wire.Error{Code: wire.CodeBadJSON, Field: typeErr.Field,
			Message: "field " + typeErr.Field + " must be " + typeErr.Type.String()}
	case errors.Is(err, io.EOF):
		return &wire.Error{Code: wire.CodeBadJSON, Message: "empty body; a JSON object is required"}
	}
	return &wire.Error{Code: wire.CodeBadJSON, Message: "malformed JSON: " + err.Error()}
}
