package gridotel

import "testing"

func TestParsePeer(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want peerAttrs
	}{
		{"http://127.0.0.1:7000", peerAttrs{"127.0.0.1", 7000}},
		{"wss://node-1.grid.svc:443/prefix", peerAttrs{"node-1.grid.svc", 443}},
		{"http://[::1]:80", peerAttrs{"::1", 80}},
		{"http://node", peerAttrs{"node", 0}},
		{"node:9", peerAttrs{"node", 9}},
		{"", peerAttrs{}},
	} {
		if got := parsePeer(tc.in); got != tc.want {
			t.Errorf("parsePeer(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}
