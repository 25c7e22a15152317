package client

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ContentVersion is the version of the Content format this package writes
// and reads.
const ContentVersion = 1

// Content is the plaintext inside every Parley ciphertext: what a sender
// encrypts, once per recipient device, and what the recipient's Decrypt
// returns. The server never sees it. It is a UTF-8 JSON object:
//
//	{"v":1,"text":"hello"}
//
// with these members:
//
//   - "v" (number, required): the format version, 1. A receiver refuses
//     content of a version it does not know instead of guessing.
//   - "text" (string): the message text. A version-1 message has it.
//   - "group" (string): in a group message, the group it was sent to; a
//     receiver refuses a message delivered in another conversation than
//     the one its sender named.
//   - "skdm" (base64): in a group message's pairwise envelope only, the
//     sender's sender-key distribution message for "group", for devices
//     that do not have the sender's current key yet.
//
// Receivers ignore members they do not know, so members can be added
// without a version bump (media with their keys, group context, replies)
// as long as an old receiver may safely ignore them; a change that old
// receivers must not misread bumps "v".
type Content struct {
	V     int    `json:"v"`
	Text  string `json:"text,omitempty"`
	Group string `json:"group,omitempty"`
	SKDM  []byte `json:"skdm,omitempty"`
}

// ErrUnsupportedContent: the plaintext is of a Content version this package
// does not know.
var ErrUnsupportedContent = errors.New("client: unsupported content version")

// TextContent returns the Content of a text message.
func TextContent(text string) Content { return Content{V: ContentVersion, Text: text} }

// Marshal encodes c as JSON, setting V to ContentVersion if it is 0.
func (c Content) Marshal() ([]byte, error) {
	if c.V == 0 {
		c.V = ContentVersion
	}
	return json.Marshal(c)
}

// ParseContent decodes a plaintext.
func ParseContent(b []byte) (Content, error) {
	var c Content
	if err := json.Unmarshal(b, &c); err != nil {
		return Content{}, fmt.Errorf("client: content is not JSON: %w", err)
	}
	if c.V != ContentVersion {
		return Content{}, fmt.Errorf("%w: %d", ErrUnsupportedContent, c.V)
	}
	return c, nil
}
