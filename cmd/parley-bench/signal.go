package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/parleychat/parley/e2ee"
	"github.com/parleychat/parley/wire"
)

// signalPair holds a pair's real Signal state (--crypto=signal): the
// sender encrypts every message with e2ee.Store.Encrypt in a session it
// started from the receiver's claimed bundle, the receiver decrypts it.
// Both stores are SQLite files with synchronous=FULL, as in the CLI, so
// this measures what a real Go client costs, not just the server.
type signalPair struct {
	s, r       *e2ee.Store
	toR, fromS e2ee.Address
}

func (p *signalPair) encrypt(ctx context.Context, plaintext []byte) (string, []byte, error) {
	return p.s.Encrypt(ctx, p.toR, plaintext)
}

func (p *signalPair) decrypt(ctx context.Context, ev *wire.Event) ([]byte, error) {
	return p.r.Decrypt(ctx, p.fromS, ev.CiphertextType, ev.Body)
}

// setupSignal gives every pair fresh identities: the receiver uploads its
// own keys (replacing whatever a kept account had), the sender claims the
// receiver's bundle and starts a session.
func (e *env) setupSignal(ctx context.Context, pairs []*pairState) error {
	dir := filepath.Join(e.tmp, "signal")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	e.logf("setting up %d Signal sessions", len(pairs))
	return parallel(ctx, len(pairs), e.o.registerConc, func(ctx context.Context, i int) error {
		p := pairs[i]
		sp := &signalPair{
			toR:   e2ee.Address{User: p.r.sess.UserID, Device: p.r.sess.DeviceID},
			fromS: e2ee.Address{User: p.s.sess.UserID, Device: p.s.sess.DeviceID},
		}
		p.sig = sp
		var err error
		if sp.s, err = e2ee.OpenStore(filepath.Join(dir, fmt.Sprintf("s%d.db", i))); err != nil {
			return err
		}
		if sp.r, err = e2ee.OpenStore(filepath.Join(dir, fmt.Sprintf("r%d.db", i))); err != nil {
			return err
		}
		for _, st := range []*e2ee.Store{sp.s, sp.r} {
			if err := st.CreateIdentity(ctx); err != nil {
				return err
			}
		}
		up, err := sp.r.KeyUpload(ctx, true, 1)
		if err != nil {
			return err
		}
		if _, err := p.r.api.UploadKeys(ctx, up); err != nil {
			return fmt.Errorf("upload keys of %s: %w", p.r.name, err)
		}
		claim, err := p.s.api.ClaimKeys(ctx, wire.ClaimRequest{User: p.r.sess.UserID, Devices: []uint32{p.r.sess.DeviceID}})
		if err != nil {
			return fmt.Errorf("claim keys of %s: %w", p.r.name, err)
		}
		if len(claim.Bundles) != 1 {
			return fmt.Errorf("claim keys of %s: %d bundles", p.r.name, len(claim.Bundles))
		}
		return sp.s.ProcessBundle(ctx, claim.Bundles[0])
	})
}

func closeSignal(pairs []*pairState) {
	for _, p := range pairs {
		if p.sig != nil {
			if p.sig.s != nil {
				p.sig.s.Close()
			}
			if p.sig.r != nil {
				p.sig.r.Close()
			}
		}
	}
}
