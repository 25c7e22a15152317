package e2ee

import (
	"context"
	"errors"
	"fmt"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/libsignal/signalerror"
)

// invalidMessage lists libsignal's errors for a message that is malformed,
// forged or not decryptable with any state held. Their texts carry at most
// numbers and addresses, so they are kept in the error; anything else is
// reported as "malformed" because libsignal's parse errors can quote the
// raw message bytes.
var invalidMessage = []error{
	signalerror.ErrNoValidSessions,
	signalerror.ErrBadMAC,
	signalerror.ErrUninitializedSession,
	signalerror.ErrWrongMessageVersion,
	signalerror.ErrTooFarIntoFuture,
	signalerror.ErrOldMessageVersion,
	signalerror.ErrUnknownMessageVersion,
	signalerror.ErrIncompleteMessage,
	signalerror.ErrNoSignedPreKey,
	signalerror.ErrNoOneTimeKeyFound,
	signalerror.ErrSenderKeyStateVerificationFailed,
	ecc.ErrBadKeyType,
}

// mapError translates a libsignal error into the package's sentinels.
// Storage and context errors pass through unchanged. Other errors become
// fallback when it is set (wrapped with the libsignal error when that is
// a known one) and are returned as they are otherwise.
func mapError(err error, fallback error) error {
	var se *storageError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, signalerror.ErrOldCounter):
		return fmt.Errorf("%w: %w", ErrDuplicate, err)
	case errors.Is(err, signalerror.ErrNoSessionForUser):
		return fmt.Errorf("%w: %w", ErrNoSession, err)
	case errors.Is(err, signalerror.ErrNoSenderKeyForUser), errors.Is(err, signalerror.ErrNoSenderKeyStateForID):
		return fmt.Errorf("%w: %w", ErrNoSenderKey, err)
	case errors.Is(err, signalerror.ErrUntrustedIdentity):
		return fmt.Errorf("%w: %w", ErrIdentityChanged, err)
	case errors.Is(err, signalerror.ErrInvalidSignature):
		return fmt.Errorf("%w: %w", ErrBadSignature, err)
	case fallback == nil:
		return err
	}
	for _, known := range invalidMessage {
		if errors.Is(err, known) {
			return fmt.Errorf("%w: %w", fallback, err)
		}
	}
	return fmt.Errorf("%w: malformed", fallback)
}
