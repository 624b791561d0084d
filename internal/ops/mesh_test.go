package ops_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/internal/ops"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

// meshServer serves ops.Handler(opts) on loopback, counting the requests
// for /mesh that reached it.
func meshServer(t *testing.T, opts ops.Options) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	h := ops.Handler(opts)
	var arrived atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == ops.MeshPath {
			arrived.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &arrived
}

// getMesh fetches /mesh within ctx: the status and which gathering
// answered ("call"), or the error.
func getMesh(ctx context.Context, srv *httptest.Server) (int, int32, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+ops.MeshPath, nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var got struct{ Call int32 }
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode == http.StatusOK {
		err = json.Unmarshal(body, &got)
	}
	return resp.StatusCode, got.Call, err
}

// TestMeshShared: concurrent requests for /mesh share one gathering,
// even when the request that started it goes away before it ends.
func TestMeshShared(t *testing.T) {
	const clients = 8
	var calls atomic.Int32
	release := make(chan struct{})
	srv, arrived := meshServer(t, ops.Options{
		MeshReuse: time.Hour, // whatever the machine's load: only the gathering below
		Mesh: func(ctx context.Context) any {
			n := calls.Add(1)
			if n == 1 {
				select {
				case <-release:
				case <-ctx.Done():
					t.Error("the gathering's context ended with its first request")
				}
			}
			return map[string]int32{"call": n}
		},
	})

	// The first request starts the gathering, then gives up.
	first, cancelFirst := context.WithCancel(testutil.Context(t))
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, _, err := getMesh(first, srv); err == nil {
			t.Error("the first request, cancelled, got an answer")
		}
	})
	testutil.WaitUntil(t, "the gathering to start", func() bool { return calls.Load() == 1 })
	got := make(chan int32, clients)
	for range clients - 1 {
		wg.Go(func() {
			code, call, err := getMesh(testutil.Context(t), srv)
			if err != nil || code != http.StatusOK {
				t.Errorf("a request for the mesh: %d, %v", code, err)
			}
			got <- call
		})
	}
	testutil.WaitUntil(t, "every request to arrive", func() bool { return arrived.Load() == clients })
	cancelFirst()
	close(release)
	wg.Wait()
	close(got)
	for call := range got {
		if call != 1 {
			t.Errorf("a request got gathering %d, want 1", call)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d requests at once made %d gatherings, want 1", clients, n)
	}
}

// TestMeshReuse: the gathering's JSON is reused for MeshReuse, not after;
// a gathering that panics answers 500 and is not reused.
func TestMeshReuse(t *testing.T) {
	const reuse = 50 * time.Millisecond
	var calls atomic.Int32
	srv, _ := meshServer(t, ops.Options{
		MeshReuse: reuse,
		Mesh: func(context.Context) any {
			if n := calls.Add(1); n != 2 {
				return map[string]int32{"call": n}
			}
			panic("gathering broke")
		},
	})
	ctx := testutil.Context(t)
	if code, call, err := getMesh(ctx, srv); code != http.StatusOK || call != 1 || err != nil {
		t.Fatalf("the first request: %d, gathering %d, %v", code, call, err)
	}
	time.Sleep(reuse + 10*time.Millisecond) // at least reuse since the gathering ended
	if code, _, _ := getMesh(ctx, srv); code != http.StatusInternalServerError {
		t.Errorf("a request served by a gathering that panicked: %d, want 500", code)
	}
	if code, call, err := getMesh(ctx, srv); code != http.StatusOK || call != 3 || err != nil {
		t.Errorf("the request after the panic: %d, gathering %d, %v; want gathering 3", code, call, err)
	}
}
