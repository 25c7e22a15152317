package wire

// Error codes (Error.Code). They never change meaning; docs/protocol.md gives
// each one's HTTP status and a test in clientapi pins both.
const (
	CodeBadJSON          = "bad_json"         // body is not the JSON the endpoint takes
	CodeInvalidParam     = "invalid_param"    // a field has a wrong value; Field names it
	CodeTooLarge         = "too_large"        // body, frame or ciphertext over its limit
	CodeMissingToken     = "missing_token"    // no access token given
	CodeUnknownToken     = "unknown_token"    // token unknown, revoked or of a removed device
	CodeForbidden        = "forbidden"        // authenticated, but not allowed to do this
	CodeBadCredentials   = "bad_credentials"  // wrong user name or password
	CodeInvalidUsername  = "invalid_username" // not a valid local user name
	CodeWeakPassword     = "weak_password"    // password too short or too long
	CodeUserInUse        = "user_in_use"      // user name already registered
	CodeUnknownUser      = "unknown_user"     // no such user
	CodeUnknownDevice    = "unknown_device"   // no such device
	CodeNotFound         = "not_found"        // no such route or object
	CodeBadSignature     = "bad_signature"    // signed prekey signature does not verify
	CodeBadKey           = "bad_key"          // a key is not a 33-byte Curve25519 public key
	CodeKeysRequired     = "keys_required"    // first upload lacks identity key or signed prekey
	CodeTooManyPreKeys   = "too_many_prekeys" // over MaxPreKeysPerUpload or MaxPreKeysStored
	CodeStaleDevices     = "stale_devices"    // envelopes do not match the device lists
	CodeClientIDReused   = "client_id_reused" // client_id already used for another conversation
	CodeUnsupported      = "unsupported"      // e.g. a remote user before federation is enabled
	CodeRateLimited      = "rate_limited"     // slow down
	CodeMethodNotAllowed = "method_not_allowed"
	CodeUnknownGroup     = "unknown_group"  // no such group
	CodeNotMember        = "not_member"     // the caller (or the user named) is not a member of the group
	CodeAlreadyMember    = "already_member" // the user is a member (or invited) already
	CodeLastOwner        = "last_owner"     // the owner cannot leave, be removed or demoted; transfer ownership first
	CodeGroupFull        = "group_full"     // over the group's member limit
	CodeNotInvited       = "not_invited"    // accept/decline without an invitation
	// Federation (server-to-server) refusals.
	CodeUnauthenticated  = "unauthenticated"   // request unsigned, signature bad or stale, or key unknown
	CodeReplayed         = "replayed"          // a signed request seen before (same nonce)
	CodeWrongDestination = "wrong_destination" // signed for another server
	CodeBadDigest        = "bad_digest"        // Content-Digest does not match the body
	CodeInternal         = "internal"          // server fault; the request may be retried
	CodeUnavailable      = "unavailable"       // shutting down or overloaded; retry later
)
