// Command homeserver runs a Parley homeserver. With no configuration it
// serves the domain "localhost" on http://127.0.0.1:8080 and keeps its
// SQLite database under ./data.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/parleychat/parley/setup"
)

func main() {
	os.Exit(run())
}

func run() int {
	cfg, err := setup.Load(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "homeserver: %v\n", err)
		return 2
	}
	log := setup.NewLogger(cfg, os.Stderr)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	node, err := setup.Start(ctx, cfg, log, setup.Extra{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "homeserver: %v\n", err)
		return 1
	}
	if cfg.DebugListen != "" {
		// Profiles for operators (go tool pprof http://HOST:PORT/debug/pprof/profile).
		go func() {
			mux := http.NewServeMux()
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
			srv := &http.Server{Addr: cfg.DebugListen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
			log.Info("debug listener", "url", "http://"+cfg.DebugListen+"/debug/pprof/")
			if err := srv.ListenAndServe(); err != nil {
				log.Error("debug listener stopped", "err", err)
			}
		}()
	}
	log.Info("parley homeserver ready", "url", node.URL(), "domain", cfg.Domain, "data", cfg.Data)
	<-ctx.Done()
	stop()
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := node.Close(shutdownCtx); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}
