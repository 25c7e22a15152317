package sqlstore

import "slices"

// DeviceCache keeps KeyedDevices answers between the write transactions of
// an engine that has a single writer (SQLite): every send asks which
// devices its recipient and sender have, and those change rarely. It is
// owned by the writer and used by one transaction at a time, so it needs
// no lock, and it stays exact because every change to a user's devices
// goes through the same writer (InsertDevice, SetDeviceKeys, DeleteDevice
// drop the user's entry). A user whose devices the open transaction
// changed is not cached until the transaction ends, so a rolled-back
// change can never be remembered. An engine with several writers (a
// cluster) must not use it.
type DeviceCache struct {
	keyed map[string][]uint32
	dirty map[string]struct{} // users whose devices the open transaction changed
	max   int
}

// NewDeviceCache remembers up to max users' devices (it starts over when
// full: the cache is an optimisation, never an authority).
func NewDeviceCache(max int) *DeviceCache {
	return &DeviceCache{keyed: map[string][]uint32{}, dirty: map[string]struct{}{}, max: max}
}

// EndTx must be called when a transaction using the cache commits or rolls
// back.
func (c *DeviceCache) EndTx() { clear(c.dirty) }

func (c *DeviceCache) changed(userID string) {
	delete(c.keyed, userID)
	c.dirty[userID] = struct{}{}
}

func (c *DeviceCache) get(userID string) ([]uint32, bool) {
	if _, ok := c.dirty[userID]; ok {
		return nil, false
	}
	devs, ok := c.keyed[userID]
	return slices.Clone(devs), ok
}

func (c *DeviceCache) put(userID string, devs []uint32) {
	if _, ok := c.dirty[userID]; ok {
		return
	}
	if len(c.keyed) >= c.max {
		clear(c.keyed)
	}
	c.keyed[userID] = slices.Clone(devs)
}
