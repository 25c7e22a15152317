package main

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"

	"github.com/parleychat/parley/client"
	"github.com/parleychat/parley/wire"
)

// The JSON lines of recv --json, one object per item; field names and
// order are part of the CLI's contract. Times are RFC 3339 (as the server
// sent them, so sent_at matches send --json's).
type (
	jsonMessage struct {
		Type         string    `json:"type"` // "message"
		ID           int64     `json:"id"`
		Conversation string    `json:"conversation"`
		Group        string    `json:"group,omitempty"` // in groups only
		Seq          uint64    `json:"seq"`
		From         string    `json:"from"`
		FromDevice   uint32    `json:"from_device"`
		Text         string    `json:"text"`
		SentAt       time.Time `json:"sent_at"`
	}
	jsonReceipt struct {
		Type         string `json:"type"`   // "receipt"
		Status       string `json:"status"` // "delivered" or "read"
		Conversation string `json:"conversation"`
		Seq          uint64 `json:"seq"`
		By           string `json:"by"`
	}
	jsonDeviceList struct {
		Type string `json:"type"` // "device_list"
		User string `json:"user"`
	}
	jsonExpired struct {
		Type         string `json:"type"` // "expired"
		Conversation string `json:"conversation"`
		FromSeq      uint64 `json:"from_seq"`
		ToSeq        uint64 `json:"to_seq"`
	}
	jsonDecryptError struct {
		Type         string    `json:"type"` // "decrypt_error"
		ID           int64     `json:"id"`
		Conversation string    `json:"conversation"`
		Group        string    `json:"group,omitempty"` // in groups only
		Seq          uint64    `json:"seq"`
		From         string    `json:"from"`
		FromDevice   uint32    `json:"from_device"`
		SentAt       time.Time `json:"sent_at"`
		Error        string    `json:"error"`
	}
	jsonSent struct {
		Type         string `json:"type"` // "sent"
		ClientID     string `json:"client_id"`
		Conversation string `json:"conversation"`
		Seq          uint64 `json:"seq"`
	}
	jsonSendError struct {
		Type         string `json:"type"` // "send_error"
		ClientID     string `json:"client_id"`
		Conversation string `json:"conversation"`
		Code         string `json:"code"`
		Error        string `json:"error"`
	}
	// jsonOther is an inbox event of a type this client does not know.
	jsonOther struct {
		Type         string `json:"type"`
		ID           int64  `json:"id"`
		Conversation string `json:"conversation,omitempty"`
		Seq          uint64 `json:"seq,omitempty"`
	}
)

// jsonItem returns the recv --json object of it.
func jsonItem(it client.Item) any {
	switch it.Type {
	case client.ItemMessage:
		return jsonMessage{it.Type, it.ID, it.Conversation, it.Group, it.Seq, it.From, it.FromDevice, it.Text, it.SentAt}
	case client.ItemReceipt:
		if it.Group != "" {
			return jsonGroupReceipt{it.Type, it.Status, it.Conversation, it.Group, it.Seq, it.Count}
		}
		return jsonReceipt{it.Type, it.Status, it.Conversation, it.Seq, it.By}
	case client.ItemDeviceList:
		return jsonDeviceList{it.Type, it.User}
	case client.ItemExpired:
		return jsonExpired{it.Type, it.Conversation, it.FromSeq, it.ToSeq}
	case client.ItemDecryptError:
		return jsonDecryptError{it.Type, it.ID, it.Conversation, it.Group, it.Seq, it.From, it.FromDevice, it.SentAt, errText(it.Err)}
	case client.ItemGroupEvent:
		return jsonGroupEventOf(it)
	case client.ItemSent:
		return jsonSent{it.Type, it.ClientID, it.Conversation, it.Seq}
	case client.ItemSendError:
		return jsonSendError{it.Type, it.ClientID, it.Conversation, it.Code, errText(it.Err)}
	}
	return jsonOther{it.Type, it.ID, it.Conversation, it.Seq}
}

// textItem returns the readable line(s) of it, without the final newline:
//
//	[15:04:05] alice@example.org/1: hi
//	✓ delivered CONVERSATION#3 by bob@example.org
//	✓ read CONVERSATION#3 by bob@example.org
//	• devices of bob@example.org changed
//	! CONVERSATION#4-7 expired unread
//	! [15:04:05] alice@example.org/1: could not decrypt CONVERSATION#3: REASON
//
// and in groups (see groupText):
//
//	[15:04:05] alice@example.org/1 in GROUP: hi
//	✓ delivered GROUP#3 to 4 devices
//	✓ read GROUP#3 by 2 members
//	• GROUP#5 alice@example.org removed carol@example.org
//
// Times are local. Control characters from the network are neutralised; a
// multi-line message continues on lines indented by four spaces.
func textItem(it client.Item) string {
	if line, ok := groupText(it); ok {
		return line
	}
	switch it.Type {
	case client.ItemMessage:
		return fmt.Sprintf("[%s] %s/%d: %s", clock(it.SentAt), clean(it.From), it.FromDevice,
			strings.ReplaceAll(cleanText(it.Text), "\n", "\n    "))
	case client.ItemReceipt:
		return fmt.Sprintf("✓ %s %s#%d by %s", clean(it.Status), clean(it.Conversation), it.Seq, clean(it.By))
	case client.ItemDeviceList:
		return fmt.Sprintf("• devices of %s changed", clean(it.User))
	case client.ItemExpired:
		return fmt.Sprintf("! %s#%d-%d expired unread", clean(it.Conversation), it.FromSeq, it.ToSeq)
	case client.ItemDecryptError:
		return fmt.Sprintf("! [%s] %s/%d: could not decrypt %s#%d: %s", clock(it.SentAt), clean(it.From),
			it.FromDevice, clean(it.Conversation), it.Seq, clean(errText(it.Err)))
	case client.ItemSent:
		return fmt.Sprintf("✓ sent %s#%d", clean(it.Conversation), it.Seq)
	case client.ItemSendError:
		return fmt.Sprintf("! message %s to %s was refused: %s", clean(it.ClientID), clean(it.Conversation), clean(errText(it.Err)))
	}
	return fmt.Sprintf("? %s event %d", clean(it.Type), it.ID)
}

func clock(t time.Time) string {
	if t.IsZero() {
		return "--:--:--"
	}
	return t.Local().Format("15:04:05")
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// clean makes s safe for one terminal line: control characters (escape
// sequences included) become U+FFFD.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '\uFFFD'
		}
		return r
	}, s)
}

// cleanText is clean, keeping newlines (and turning tabs into spaces).
func cleanText(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n':
			return r
		case r == '\t':
			return ' '
		case unicode.IsControl(r):
			return '\uFFFD'
		}
		return r
	}, s)
}

// printer writes recv's items, as JSON lines or readable lines.
type printer struct {
	w    io.Writer
	json bool
}

// print writes one item. An error (stdout closed, say) stops recv before
// the item is acknowledged.
func (p *printer) print(it client.Item) error {
	if p.json {
		return writeJSON(p.w, jsonItem(it))
	}
	_, err := fmt.Fprintln(p.w, textItem(it))
	return err
}

// deviceLine is one line of parley devices: id, name, creation time (RFC
// 3339, UTC) and "*" for this device, separated by tabs.
func deviceLine(d wire.Device) string {
	line := fmt.Sprintf("%d\t%s\t%s", d.DeviceID, clean(d.Name), d.CreatedAt.UTC().Format(time.RFC3339))
	if d.Current {
		line += "\t*"
	}
	return line
}
