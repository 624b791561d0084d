package grid

import (
	"encoding/json"
	"math"
	"time"

	"github.com/gridmesh/gridmesh/mux"
)

// The stats' JSON, as StatsHandler serves it, names every field in
// snake_case with its unit where it has one (last_rtt_seconds,
// bytes_in), as the gateway's and the worker's stats do. The Go structs
// keep their Go names; these types are their JSON shape.

// muxStatsJSON is mux.Stats in JSON.
type muxStatsJSON struct {
	BytesIn      uint64 `json:"bytes_in"`
	BytesOut     uint64 `json:"bytes_out"`
	FramesIn     uint64 `json:"frames_in"`
	Writes       uint64 `json:"writes"`
	RequestsOut  uint64 `json:"requests_out"`
	Served       uint64 `json:"served"`
	RemoteErrors uint64 `json:"remote_errors"`
	Cancelled    uint64 `json:"cancelled"`
	ServedInline uint64 `json:"served_inline"`
	Handoffs     uint64 `json:"inline_handoffs"`
	InFlight     int    `json:"in_flight"`
	Running      int    `json:"running"`
	Unanswered   int    `json:"unanswered"`
	StreamsOut   int    `json:"streams_out"`
	StreamsIn    int    `json:"streams_in"`
	QueuedBytes  int    `json:"queued_bytes"`
}

func toMuxJSON(s mux.Stats) muxStatsJSON {
	return muxStatsJSON{
		BytesIn: s.BytesIn, BytesOut: s.BytesOut, FramesIn: s.FramesIn, Writes: s.Writes,
		RequestsOut: s.RequestsOut, Served: s.Served, RemoteErrors: s.RemoteErrors, Cancelled: s.Cancelled,
		ServedInline: s.ServedInline, Handoffs: s.InlineHandoffs,
		InFlight: s.InFlight, Running: s.Running, Unanswered: s.Unanswered,
		StreamsOut: s.StreamsOut, StreamsIn: s.StreamsIn, QueuedBytes: s.QueuedBytes,
	}
}

func (j muxStatsJSON) stats() mux.Stats {
	return mux.Stats{
		BytesIn: j.BytesIn, BytesOut: j.BytesOut, FramesIn: j.FramesIn, Writes: j.Writes,
		RequestsOut: j.RequestsOut, Served: j.Served, RemoteErrors: j.RemoteErrors, Cancelled: j.Cancelled,
		ServedInline: j.ServedInline, InlineHandoffs: j.Handoffs,
		InFlight: j.InFlight, Running: j.Running, Unanswered: j.Unanswered,
		StreamsOut: j.StreamsOut, StreamsIn: j.StreamsIn, QueuedBytes: j.QueuedBytes,
	}
}

// connectionStatsJSON is ConnectionStats in JSON.
type connectionStatsJSON struct {
	Host           string    `json:"host"`
	State          State     `json:"state"`
	Dials          bool      `json:"dials"`
	PeerInstance   string    `json:"peer_instance,omitempty"`
	Connects       uint64    `json:"connects"`
	Reconnects     uint64    `json:"reconnects"`
	LastConnect    time.Time `json:"last_connect"`
	LastRTTSeconds float64   `json:"last_rtt_seconds"`
	LastError      string    `json:"last_error,omitempty"`
	muxStatsJSON
}

// MarshalJSON encodes the stats in snake_case, the round trip in seconds
// (last_rtt_seconds).
func (s ConnectionStats) MarshalJSON() ([]byte, error) {
	return json.Marshal(connectionStatsJSON{
		Host: s.Host, State: s.State, Dials: s.Dials, PeerInstance: s.PeerInstance,
		Connects: s.Connects, Reconnects: s.Reconnects, LastConnect: s.LastConnect,
		LastRTTSeconds: s.LastRTT.Seconds(), LastError: s.LastError, muxStatsJSON: toMuxJSON(s.Stats),
	})
}

// UnmarshalJSON decodes what MarshalJSON encodes.
func (s *ConnectionStats) UnmarshalJSON(b []byte) error {
	var j connectionStatsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*s = ConnectionStats{
		Host: j.Host, State: j.State, Dials: j.Dials, PeerInstance: j.PeerInstance,
		Connects: j.Connects, Reconnects: j.Reconnects, LastConnect: j.LastConnect,
		LastRTT: time.Duration(math.Round(j.LastRTTSeconds * float64(time.Second))), LastError: j.LastError,
		Stats: j.muxStatsJSON.stats(),
	}
	return nil
}

// managerStatsJSON is ManagerStats in JSON.
type managerStatsJSON struct {
	Local      string                     `json:"local"`
	Connected  int                        `json:"connected"`
	Reconnects uint64                     `json:"reconnects"`
	Peers      map[string]ConnectionStats `json:"peers"`
	muxStatsJSON
}

// MarshalJSON encodes the stats in snake_case, each peer's under "peers".
func (s ManagerStats) MarshalJSON() ([]byte, error) {
	return json.Marshal(managerStatsJSON{
		Local: s.Local, Connected: s.Connected, Reconnects: s.Reconnects, Peers: s.Peers,
		muxStatsJSON: toMuxJSON(s.Stats),
	})
}

// UnmarshalJSON decodes what MarshalJSON encodes.
func (s *ManagerStats) UnmarshalJSON(b []byte) error {
	var j managerStatsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*s = ManagerStats{Local: j.Local, Connected: j.Connected, Reconnects: j.Reconnects, Peers: j.Peers, Stats: j.muxStatsJSON.stats()}
	return nil
}
