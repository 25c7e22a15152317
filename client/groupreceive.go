package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/parleychat/parley/e2ee"
	"github.com/parleychat/parley/wire"
)

// ItemGroupEvent: a membership or metadata change of Group (Action, Actor,
// User, Role, Members, Meta), in the group's sequence (Seq).
const ItemGroupEvent = wire.EventGroup

// processGroupEvent turns a group_event into an Item. Someone leaving or
// being removed (this account included) and the group's end retire this
// device's sender key for the group: the next send makes a new one, so
// whoever left cannot read what follows even if they get its ciphertext.
// (SendGroup checks the group's removal_seq too, which also covers
// events this device has not seen yet.)
func (a *Account) processGroupEvent(ctx context.Context, ev wire.Event) (Item, bool, error) {
	group := ev.Group
	if group == "" {
		group = ev.Conversation
	}
	switch ev.Action {
	case wire.GroupRemoved, wire.GroupLeft, wire.GroupDeleted:
		if err := a.rotateSenderKey(ctx, group); err != nil {
			return Item{}, false, err
		}
	}
	conv := ev.Conversation
	if conv == "" {
		conv = group
	}
	return Item{Type: ItemGroupEvent, ID: ev.ID, Conversation: conv, Group: group, Seq: ev.Seq,
		Action: ev.Action, Actor: ev.Actor, User: ev.User, Role: ev.Role, Members: ev.Members, Meta: ev.Meta}, true, nil
}

// processSenderKeyMessage decrypts a group message sent as the shared
// sender-key ciphertext. item is the message Item so far (ids, sender).
func (a *Account) processSenderKeyMessage(ctx context.Context, ev wire.Event, item Item) (Item, bool, error) {
	fail := func(err error) (Item, bool, error) {
		item.Type, item.Err = ItemDecryptError, err
		return item, true, nil
	}
	if ev.Group == "" {
		return fail(errors.New("sender-key message outside a group"))
	}
	if ev.From == "" || ev.FromDevice == 0 {
		return fail(errors.New("message without sender"))
	}
	from := e2ee.Address{User: ev.From, Device: ev.FromDevice}
	pt, err := a.store.GroupDecrypt(ctx, ev.Group, from, ev.Body)
	switch {
	case err == nil:
	case errors.Is(err, e2ee.ErrDuplicate):
		// Decrypted before, or sent before this device got the key.
		return Item{}, false, nil
	case errors.Is(err, e2ee.ErrNoSenderKey), errors.Is(err, e2ee.ErrInvalidMessage):
		return fail(err)
	default:
		return Item{}, false, err
	}
	c, err := ParseContent(pt)
	if err != nil {
		return fail(err)
	}
	if c.Group != "" && c.Group != ev.Group {
		return fail(fmt.Errorf("message for group %s delivered in %s", c.Group, ev.Group))
	}
	// A distribution message is accepted over pairwise sessions only: they
	// are what authenticates it. One in here is ignored.
	item.Text = c.Text
	return item, true, nil
}

// acceptGroupContent checks a pairwise message's group context against the
// event's and stores the sender key it carries. A non-nil error means the
// message must not be shown (it names another conversation); a failure to
// store the key is a warning, since the message itself is decrypted and
// cannot be decrypted again.
func (a *Account) acceptGroupContent(ctx context.Context, ev wire.Event, from e2ee.Address, c Content) error {
	if c.Group != "" && c.Group != ev.Group {
		if ev.Group == "" {
			return fmt.Errorf("message for group %s delivered as a direct message", c.Group)
		}
		return fmt.Errorf("message for group %s delivered in %s", c.Group, ev.Group)
	}
	if len(c.SKDM) == 0 || ev.Group == "" {
		return nil
	}
	// The pairwise message is already decrypted (its session moved on):
	// keep the key even if ctx ends now.
	err := a.store.ProcessSenderKeyDistribution(context.WithoutCancel(ctx), ev.Group, from, c.SKDM)
	if err != nil {
		a.warn(Warning{Kind: WarnSenderKey, User: from.User, Device: from.Device,
			Message: fmt.Sprintf("could not keep the group sender key of %s device %d for %s: %v", from.User, from.Device, ev.Group, err)})
	}
	return nil
}

// readMarkerGone reports whether a read marker for conv failed only
// because this account is no longer in the group (removed, left, or the
// group was deleted) after reading its messages: nothing to tell anyone.
func readMarkerGone(conv string, err error) bool {
	return IsGroupID(conv) && (IsCode(err, wire.CodeNotFound) || IsCode(err, wire.CodeNotMember) ||
		IsCode(err, wire.CodeUnknownGroup))
}
