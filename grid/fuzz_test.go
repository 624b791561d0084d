package grid

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"
)

// FuzzHandshake feeds arbitrary handshake headers to an accepting
// Manager's checks: none may panic, and any header set they accept must be
// exactly a correctly signed, fresh handshake from a peer that dials us.
// The corpus is seeded with genuine handshakes from the encoder.
func FuzzHandshake(f *testing.F) {
	hosts := []string{"http://a:1", "http://b:2", "http://c:3"}
	local := hosts[0]
	now := time.UnixMilli(1_700_000_000_000)
	m, err := NewManager(context.Background(), Options{
		Local: local, Hosts: hosts, Secret: testSecret,
		Now: func() time.Time { return now }, ReplayCacheSize: 4,
		NetDial: refuseDial,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { m.Close() })
	auth := HMACAuthenticator(testSecret)
	for _, from := range hosts[1:] {
		h := handshake{from: from, to: local, millis: now.UnixMilli(), nonce: newID(), instance: newID(), hosts: m.currentHash()}
		hdr, err := h.header(auth)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(hdr.Get(headerFrom), hdr.Get(headerTo), hdr.Get(headerTime), hdr.Get(headerNonce),
			hdr.Get(headerInstance), hdr.Get(headerHosts), hdr.Get(headerProof))
	}
	f.Add("", "", "", "", "", "", "")
	f.Add("http://b:2", local, "-1", "zz", "00", "x", "!!")
	f.Fuzz(func(t *testing.T, from, to, millis, nonce, instance, hostsHash, proof string) {
		hdr := http.Header{}
		for k, v := range map[string]string{
			headerFrom: from, headerTo: to, headerTime: millis, headerNonce: nonce,
			headerInstance: instance, headerHosts: hostsHash, headerProof: proof,
		} {
			hdr.Set(k, v)
		}
		h, rej := m.verifyDial(hdr)
		if rej != nil {
			if rej.status < 400 || rej.status > 599 || rej.reason == "" {
				t.Fatalf("rejection without a status or reason: %+v", rej)
			}
			return
		}
		// Accepted: it must be a real handshake from a peer that dials us
		// (its host list may differ from ours: it only has to list us).
		c := m.Connection(h.from)
		if c == nil || c.dials || h.to != local {
			t.Fatalf("accepted a handshake that names the wrong nodes: %+v", h)
		}
		want, _ := auth.Sign(h.from, h.dialMessage())
		got, err := base64.RawURLEncoding.DecodeString(proof)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("accepted a handshake without a valid proof: %+v", h)
		}
	})
}

// refuseDial fails every dial at once.
func refuseDial(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("dialing disabled in this test")
}
