package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Bounds of the mesh's gathering (Options.Mesh) behind MeshPath.
const (
	// DefaultMeshReuse is Options.MeshReuse's default: half a page's
	// poll, so that pages and tabs polling every second share most
	// gatherings.
	DefaultMeshReuse = 500 * time.Millisecond
	// meshTimeout bounds one gathering, which no request's end cuts
	// short: grid.Manager.MeshStats ends within the node's PingTimeout.
	meshTimeout = 30 * time.Second
)

// meshCache shares the gathering of the mesh among the requests for it:
// at most one runs at a time, every request that arrives while it runs
// waits for its JSON, and the JSON answers the requests of the next
// reuse too. So a node with many pages open gathers (calls every
// peer, and encodes up to about 1 MiB a node) about once a second,
// however many pages poll it. All methods may be called concurrently.
type meshCache struct {
	mesh  func(context.Context) any
	reuse time.Duration
	mu    sync.Mutex
	last  *meshRun // the gathering running, or the last one; nil before the first
}

// meshRun is one gathering.
type meshRun struct {
	done  chan struct{} // closed when body, err and ended are set
	body  []byte
	err   error
	ended time.Time // when it ended, in the monotonic clock
}

// get returns the mesh's JSON, from the gathering running or one that
// ended less than c.reuse ago, or from a new one it runs itself; it
// waits for another's until ctx ends.
func (c *meshCache) get(ctx context.Context) ([]byte, error) {
	c.mu.Lock()
	r := c.last
	fresh := r != nil && (!r.isDone() || (r.err == nil && time.Since(r.ended) < c.reuse))
	if !fresh {
		r = &meshRun{done: make(chan struct{})}
		c.last = r
	}
	c.mu.Unlock()
	if !fresh {
		c.gather(ctx, r)
	}
	select {
	case <-r.done:
		return r.body, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// gather runs one gathering for r on the caller's goroutine, under a
// context that the caller's request ending does not cancel: the others
// waiting for it still get it.
// A panic in Mesh is its error, so that no one waits for it in vain.
func (c *meshCache) gather(ctx context.Context, r *meshRun) {
	var body []byte
	err := fmt.Errorf("ops: Mesh panicked")
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("ops: Mesh panicked: %v", p)
		}
		c.mu.Lock()
		r.body, r.err, r.ended = body, err, time.Now()
		c.mu.Unlock()
		close(r.done)
	}()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), meshTimeout)
	defer cancel()
	body, err = json.Marshal(c.mesh(ctx))
}

// isDone reports whether r ended; c.mu must be held, for r.ended.
func (r *meshRun) isDone() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// meshHandler serves the mesh's JSON, one gathering shared by the
// requests that arrive while it runs and in the reuse after.
func meshHandler(mesh func(context.Context) any, reuse time.Duration) http.Handler {
	if reuse <= 0 {
		reuse = DefaultMeshReuse
	}
	c := &meshCache{mesh: mesh, reuse: reuse}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := c.get(r.Context())
		if err != nil {
			if r.Context().Err() == nil {
				http.Error(w, "mesh: "+err.Error(), http.StatusInternalServerError)
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(body)
		_, _ = w.Write([]byte("\n"))
	})
}
