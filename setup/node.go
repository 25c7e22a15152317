package setup

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/parleychat/parley/clientapi"
	"github.com/parleychat/parley/federation"
	"github.com/parleychat/parley/homeserver"
	"github.com/parleychat/parley/storage/sqlite"
)

// Node is a running homeserver.
type Node struct {
	cfg    Config
	log    *slog.Logger
	store  *sqlite.Store
	hs     *homeserver.Server
	api    *clientapi.API
	srv    *http.Server
	ln     net.Listener
	url    string
	cancel context.CancelFunc
	wg     sync.WaitGroup

	fedSrv *http.Server // nil: federation disabled
	fedURL string
	fedAPI *federation.API
	sender *federation.Sender
}

// Extra are settings that only tests and tools change.
type Extra struct {
	Password homeserver.PasswordParams // argon2id costs (default: homeserver's)
	Now      func() time.Time          // clock
	Client   clientapi.Options
	// Federation knobs: tests shorten backoffs and DNS cache lifetimes.
	Sender   federation.SenderOptions
	Resolver federation.ResolverOptions
	// ReadHeaderTimeout bounds the TLS handshake and a request's headers
	// on both listeners (default 10s): a slow-loris client is cut off.
	ReadHeaderTimeout time.Duration
}

func (e Extra) readHeaderTimeout() time.Duration {
	if e.ReadHeaderTimeout > 0 {
		return e.ReadHeaderTimeout
	}
	return 10 * time.Second
}

// Start opens storage, starts the client listener and the background jobs,
// and returns once the server accepts connections.
func Start(ctx context.Context, cfg Config, log *slog.Logger, extra Extra) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	store, err := sqlite.Open(ctx, cfg.Data, sqlite.Options{})
	if err != nil {
		return nil, err
	}
	hs, err := homeserver.New(store, homeserver.Options{Domain: cfg.Domain, Retention: time.Duration(cfg.Retention),
		Password: extra.Password, Now: extra.Now, MaxGroupMembers: cfg.MaxGroupMembers}, log)
	if err != nil {
		store.Close()
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	api := clientapi.New(runCtx, hs, log, extra.Client)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		cancel()
		store.Close()
		return nil, fmt.Errorf("config listen: %w", err)
	}
	scheme := "http"
	if cfg.ClientTLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.ClientTLSCert, cfg.ClientTLSKey)
		if err != nil {
			ln.Close()
			cancel()
			store.Close()
			return nil, fmt.Errorf("config client_tls_cert: %w", err)
		}
		ln = tls.NewListener(ln, serverTLS(cert))
		scheme = "https"
	}
	n := &Node{cfg: cfg, log: log, store: store, hs: hs, api: api, ln: ln, cancel: cancel,
		url: scheme + "://" + ln.Addr().String()}
	n.srv = &http.Server{
		Handler:           api.Handler(),
		ReadHeaderTimeout: extra.readHeaderTimeout(), // slow-loris: headers must arrive promptly
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	if cfg.FederationEnabled() {
		if err := n.startFederation(runCtx, extra); err != nil {
			ln.Close() // not served yet: srv.Close would not close it
			cancel()
			store.Close()
			return nil, err
		}
	} else if cfg.FederationListen != "" {
		log.Info("federation disabled: set tls_cert and tls_key (or federation_insecure for local testing)")
	}
	n.wg.Add(3)
	go func() {
		defer n.wg.Done()
		if err := n.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("client listener stopped", "err", err)
		}
	}()
	go func() { defer n.wg.Done(); api.Run(runCtx) }()
	go func() { defer n.wg.Done(); hs.RunExpiry(runCtx, time.Duration(cfg.ExpiryInterval)) }()
	return n, nil
}

// startFederation opens the federation listener and starts the sender.
func (n *Node) startFederation(ctx context.Context, extra Extra) error {
	cfg, log := n.cfg, n.log
	key, err := federation.LoadOrCreateKey(cfg.Data)
	if err != nil {
		return fmt.Errorf("federation key: %w", err)
	}
	resolver, err := federation.NewResolver(cfg.DNSResolver, extra.Resolver)
	if err != nil {
		return fmt.Errorf("config dns_resolver: %w", err)
	}
	dialer := &federation.Dialer{Resolver: resolver, AllowPrivate: cfg.FederationAllowPrivate}
	clientTLS := dialTLS()
	if cfg.FederationCA != "" {
		pem, err := os.ReadFile(cfg.FederationCA)
		if err != nil {
			return fmt.Errorf("config federation_ca: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("config federation_ca: no PEM certificate in %s", cfg.FederationCA)
		}
		clientTLS.RootCAs = pool
	}
	hc := &http.Client{Transport: federation.NewTransport(dialer, clientTLS), Timeout: time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	scheme := "https"
	if cfg.TLSCert == "" {
		scheme = "http" // federation_insecure
	}
	keys, err := federation.NewKeyCache(federation.KeyCacheOptions{Client: hc, Scheme: scheme})
	if err != nil {
		return err
	}
	policy := &federation.Policy{Allow: cfg.FederationAllow, Deny: cfg.FederationDeny}
	client := federation.NewClient(cfg.Domain, key, hc, scheme)
	n.sender = federation.NewSender(n.hs, client, log, extra.Sender)
	n.hs.SetFederation(homeserver.Federation{Remote: client, Wake: n.sender.Wake, Allowed: policy.Allowed})
	api := federation.NewAPI(n.hs, n.sender, key, keys, log, federation.APIOptions{Policy: policy})
	n.fedAPI = api

	ln, err := net.Listen("tcp", cfg.FederationListen)
	if err != nil {
		return fmt.Errorf("config federation_listen: %w", err)
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("config tls_cert: %w", err)
		}
		ln = tls.NewListener(ln, serverTLS(cert))
	}
	n.fedURL = scheme + "://" + ln.Addr().String()
	n.fedSrv = &http.Server{
		Handler:           api.Handler(),
		ReadHeaderTimeout: extra.readHeaderTimeout(),
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		if err := n.fedSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("federation listener stopped", "err", err)
		}
	}()
	go func() { defer n.wg.Done(); n.sender.Run(ctx) }()
	log.Info("federation ready", "url", n.fedURL, "key_id", key.ID)
	return nil
}

// FederationURL is the federation listener's base URL ("" if disabled).
func (n *Node) FederationURL() string { return n.fedURL }

// FederationStatus is the outbound queues' state (nil if disabled).
func (n *Node) FederationStatus() []federation.Status {
	if n.sender == nil {
		return nil
	}
	return n.sender.Status()
}

// ClientRoutes lists the client API's endpoints.
func (n *Node) ClientRoutes() []clientapi.Route { return n.api.Routes() }

// FederationRoutes lists the federation endpoints' patterns (nil if
// federation is disabled).
func (n *Node) FederationRoutes() []string {
	if n.fedAPI == nil {
		return nil
	}
	return n.fedAPI.Routes()
}

// URL is the client API's base URL, e.g. http://127.0.0.1:8080.
func (n *Node) URL() string { return n.url }

// Homeserver gives tests the domain object (to run expiry at a chosen time).
func (n *Node) Homeserver() *homeserver.Server { return n.hs }

// Sockets is the number of connected device sockets.
func (n *Node) Sockets() int { return n.api.Sockets() }

// StoreStats counts the store's Writes and commits so far.
func (n *Node) StoreStats() sqlite.Stats { return n.store.Stats() }

// SocketInboxReads is how many times sockets have read their inbox from
// storage (catching up after a connect, or after falling behind).
func (n *Node) SocketInboxReads() int64 { return n.api.SocketInboxReads() }

// SocketWriterStarts is how many goroutines were started to write to
// sockets (clientapi.API.SocketWriterStarts).
func (n *Node) SocketWriterStarts() int64 { return n.api.SocketWriterStarts() }

// Close shuts down in reverse start order: stop accepting, close sockets
// (clients reconnect elsewhere and read their inboxes), finish in-flight
// requests within ctx, then flush and close storage.
func (n *Node) Close(ctx context.Context) error {
	err := shutdown(ctx, n.srv)
	if n.fedSrv != nil {
		err = errors.Join(err, shutdown(ctx, n.fedSrv))
	}
	n.cancel()
	n.wg.Wait()
	n.hs.Close()
	return errors.Join(err, n.store.Close())
}

// shutdown stops srv gracefully, but not for long: net/http counts a
// connection that never sent a request as busy for 5 s, and requests here
// are short. Sockets are hijacked and closed by the API itself.
func shutdown(ctx context.Context, srv *http.Server) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) {
		return srv.Close()
	} else {
		return err
	}
}

// NewLogger builds the process logger from the config.
func NewLogger(cfg Config, w *os.File) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(strings.ToUpper(cfg.LogLevel)))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(clientapi.ContextHandler{Handler: h})
}
