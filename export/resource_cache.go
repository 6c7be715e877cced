package export

import (
	"time"

	"github.com/tracewire/tracewire/spans"
)

// Exited processes stop producing spans, so an entry no batch used for
// resourceTTL is dropped; a late span simply rebuilds it.
const (
	resourceTTL   = 10 * time.Minute
	resourceSweep = time.Minute
)

// resourceCache encodes each process's Resource message once.
type resourceCache struct {
	cfg       ResourceConfig
	entries   map[*spans.Process]*cachedResource
	lastSweep time.Time
}

type cachedResource struct {
	res  []byte
	used time.Time
}

func newResourceCache(cfg ResourceConfig) *resourceCache {
	return &resourceCache{cfg: cfg, entries: make(map[*spans.Process]*cachedResource)}
}

// get returns p's resource, marking it used at now.
func (c *resourceCache) get(p *spans.Process, now time.Time) []byte {
	e := c.entries[p]
	if e == nil {
		e = &cachedResource{res: buildResource(c.cfg, p)}
		c.entries[p] = e
	}
	e.used = now
	return e.res
}

// sweep drops entries unused for resourceTTL, at most once per resourceSweep.
func (c *resourceCache) sweep(now time.Time) {
	if now.Sub(c.lastSweep) < resourceSweep {
		return
	}
	c.lastSweep = now
	for p, e := range c.entries {
		if now.Sub(e.used) > resourceTTL {
			delete(c.entries, p)
		}
	}
}
