"use strict";
// The status page: polls this port's mesh JSON (grid.MeshStats, plus each
// node's sections) about every second and draws it. Everything a node
// sends is put in the page as text (textContent), never as HTML.
(() => {
  const POLL_MS = 1000;
  const FETCH_TIMEOUT_MS = 15000;
  const $ = (id) => document.getElementById(id);

  // The bearer token, if any, is kept in this tab's session storage (in
  // memory where storage is refused) and sent as an Authorization header.
  // It comes from the form, or in the address after # ("#token=...",
  // which browsers never send to a server): taken from there at once, and
  // the address replaced by one without it, so that it stays neither in
  // the address bar nor in the history.
  const TOKEN_KEY = "gridmesh-ops-token";
  let memToken = "";
  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return memToken; }
  }
  function setToken(tok) {
    memToken = tok;
    try { sessionStorage.setItem(TOKEN_KEY, tok); } catch (e) { /* kept in memory */ }
  }
  function takeTokenFromAddress() {
    const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (!m) return;
    let tok = m[1];
    try { tok = decodeURIComponent(tok); } catch (e) { /* kept as written */ }
    setToken(tok);
    history.replaceState(history.state, "", location.pathname + location.search);
  }

  // el builds an element: attributes (class, data-*, title) and children
  // (nodes, or strings as text).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === "class") e.className = v;
      else e.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  const num = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : "–");
  function rate(n, unit) {
    if (typeof n !== "number" || !isFinite(n)) return "–";
    if (unit === "B/s") {
      const units = ["B/s", "kB/s", "MB/s", "GB/s"];
      let i = 0;
      while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
      return (n < 10 && i > 0 ? n.toFixed(1) : Math.round(n)) + " " + units[i];
    }
    return (n < 10 ? n.toFixed(1) : Math.round(n).toLocaleString("en-US")) + unit;
  }
  function dur(s) {
    if (typeof s !== "number" || !isFinite(s)) return "–";
    if (s === 0) return "0";
    if (s < 1e-3) return (s * 1e6).toFixed(0) + " µs";
    if (s < 1) return (s * 1e3).toFixed(s < 0.01 ? 2 : 1) + " ms";
    return s.toFixed(2) + " s";
  }
  const short = (host) => String(host).replace(/^[a-z]+:\/\//, "");
  // What a node answered, read defensively: whatever the JSON holds, the
  // page draws what it can.
  const obj = (v) => (v && typeof v === "object" && !Array.isArray(v) ? v : {});
  const arr = (v) => (Array.isArray(v) ? v : []);
  const gridOf = (n) => (n.stats ? obj(n.stats.grid) : null);
  const peersOf = (n) => obj(gridOf(n) && gridOf(n).peers);
  const sectionsOf = (n) => obj(n.stats && n.stats.sections);

  // What the previous poll saw of each node, for rates: by host, its
  // instance, clock and counters. A restarted node (new instance) or a
  // counter going down gives no rate.
  let prev = new Map();
  const roles = new Map(); // last known role by host, so a down node keeps it
  let polls = 0;

  function perSecond(host, st, key, now) {
    const p = prev.get(host);
    if (!p || !st || p.instance !== st.instance) return undefined;
    const dt = (Date.parse(st.time) - p.time) / 1000;
    const before = p.values.get(key), after = now;
    if (!(dt > 0) || typeof before !== "number" || typeof after !== "number" || after < before) return undefined;
    return (after - before) / dt;
  }

  function remember(mesh) {
    const next = new Map();
    for (const n of mesh.nodes) {
      const st = n.stats;
      if (!st) continue;
      const values = new Map();
      for (const [peer, ps] of Object.entries(peersOf(n))) {
        values.set("in " + peer, obj(ps).bytes_in);
        values.set("out " + peer, obj(ps).bytes_out);
      }
      const gw = obj(sectionsOf(n).gateway);
      values.set("received", gw.received); values.set("sent", gw.sent);
      for (const w of arr(obj(sectionsOf(n).dispatch).workers)) values.set("done " + obj(w).host, obj(w).done);
      next.set(n.host, { instance: st.instance, time: Date.parse(st.time), values });
    }
    prev = next;
  }

  function roleOf(n) {
    const s = sectionsOf(n);
    if (s.gateway || s.dispatch) return "gateway";
    if (s.worker || s.processes) return "worker";
    return n.stats ? "node" : roles.get(n.host) || "";
  }

  function renderNodes(mesh) {
    const t = $("nodes");
    // A worker that is down is known from the gateways' dispatch.
    for (const n of mesh.nodes) {
      for (const w of arr(obj(sectionsOf(n).dispatch).workers)) {
        if (!roles.has(obj(w).host)) roles.set(obj(w).host, "worker");
      }
    }
    const rows = [el("tr", {},
      el("th", {}, "node"), el("th", {}, "role"), el("th", {}, "state"),
      el("th", { class: "num" }, "peers up"), el("th", { class: "num" }, "requests out"),
      el("th", { class: "num" }, "served"), el("th", { class: "num" }, "in flight"),
      el("th", { class: "num" }, "streams"), el("th", { class: "num" }, "answered in"), el("th", {}, "error"))];
    for (const n of mesh.nodes) {
      const g = gridOf(n);
      const role = roleOf(n);
      if (role) roles.set(n.host, role);
      const errs = [];
      if (n.error) errs.push(n.error);
      if (n.stats_error) errs.push(n.stats_error);
      for (const [name, e] of Object.entries(obj(n.stats && n.stats.section_errors))) errs.push(name + ": " + e);
      if (n.peers_left_out) errs.push(num(n.peers_left_out) + " peers not in this node's hosts left out");
      const state = !n.up ? "down" : n.stats ? "up" : "nostats";
      const label = state === "nostats" ? "up, no stats" + (n.older_version ? " (older version)" : "") : state;
      rows.push(el("tr", { class: n.up ? "" : "down", "data-node": n.host, "data-up": !!n.up, "data-state": state },
        el("td", { class: "host" }, short(n.host), n.self ? el("span", { class: "muted" }, " (this node)") : null),
        el("td", {}, role || "–"),
        el("td", {}, el("span", { class: "badge " + state }, label)),
        el("td", { class: "num" }, g ? num(g.connected) + " of " + num(Object.keys(peersOf(n)).length) : "–"),
        el("td", { class: "num" }, g ? num(g.requests_out) : "–"),
        el("td", { class: "num" }, g ? num(g.served) : "–"),
        el("td", { class: "num" }, g ? num(g.in_flight) : "–"),
        el("td", { class: "num" }, g ? num(g.streams_out + g.streams_in) : "–"),
        el("td", { class: "num" }, dur(n.call_seconds)),
        el("td", { class: "err" }, errs.join("; "))));
    }
    t.replaceChildren(...rows);
  }

  // renderMatrix draws a row and a column per node of the mesh (the
  // gathering node's membership): a peer that a node lists beyond it has
  // no column.
  function renderMatrix(mesh) {
    const cols = [...new Set(mesh.nodes.map((n) => n.host))].sort();
    const head = el("tr", {}, el("th", {}, "node ╲ peer"), ...cols.map((h) => el("th", { class: "host" }, short(h))));
    const rows = [head];
    for (const n of mesh.nodes) {
      const cells = [el("th", { class: "host" }, short(n.host))];
      for (const c of cols) cells.push(matrixCell(n, c));
      rows.push(el("tr", { class: n.up ? "" : "down" }, ...cells));
    }
    $("matrix").replaceChildren(...rows);
  }

  function matrixCell(n, peer) {
    const attrs = { "data-from": n.host, "data-to": peer };
    if (peer === n.host) return el("td", { ...attrs, class: "self", "data-state": "self" }, "·");
    if (!n.stats) return el("td", { ...attrs, class: "unknown", "data-state": "unknown", title: n.error || "" }, "?");
    const ps = peersOf(n)[peer];
    if (!ps || typeof ps !== "object") return el("td", { ...attrs, class: "self", "data-state": "unlisted", title: "not in this node's hosts" }, "not listed");
    const rin = perSecond(n.host, n.stats, "in " + peer, ps.bytes_in);
    const rout = perSecond(n.host, n.stats, "out " + peer, ps.bytes_out);
    const errs = [];
    if (ps.reconnects) errs.push(num(ps.reconnects) + " reconnects");
    if (ps.remote_errors) errs.push(num(ps.remote_errors) + " errors");
    const title = [ps.dials ? "this node dials" : "the peer dials", ps.last_error ? "last error: " + ps.last_error : ""].filter(Boolean).join("\n");
    const rtt = ps.state === "connected" ? ps.last_rtt_seconds : 0; // a lost connection's last RTT is stale
    return el("td", { ...attrs, class: ps.state, "data-state": ps.state, "data-rtt": rtt ? rtt : null, title },
      el("div", {}, el("span", { class: "cell-state" }, ps.state), " ",
        rtt ? "rtt " + dur(rtt) : ps.state === "connected" ? el("span", { class: "muted", title: "no ping answered yet" }, "rtt –") : ""),
      el("div", { class: "muted" }, "↓ " + rate(rin, "B/s") + "  ↑ " + rate(rout, "B/s")),
      errs.length ? el("div", { class: "bad" }, errs.join(", ")) : null);
  }

  function kv(label, value, cls) {
    return el("div", {}, el("b", { class: cls || "" }, value), el("span", {}, label));
  }

  function renderPipeline(mesh) {
    const byHost = new Map(mesh.nodes.map((n) => [n.host, n]));
    const gws = mesh.nodes.filter((n) => roles.get(n.host) === "gateway");
    $("pipeline").hidden = gws.length === 0;
    const parts = [];
    for (const n of gws) {
      const s = sectionsOf(n);
      const g = s.gateway && obj(s.gateway), d = s.dispatch && obj(s.dispatch);
      parts.push(el("h3", { class: "host" }, "gateway " + short(n.host)));
      if (!g) {
        const why = n.error || n.stats_error || obj(n.stats && n.stats.section_errors).gateway || "no gateway stats";
        parts.push(el("p", { class: "bad", "data-gateway": n.host, "data-up": false }, why));
        continue;
      }
      const lat = g.tx_latency || s.tx_latency;
      const cells = [
        kv("Prime stream", g.connected ? "connected" : "down", g.connected ? "" : "bad"),
        kv("received", num(g.received)), kv("received / s", rate(perSecond(n.host, n.stats, "received", g.received), "")),
        kv("in flight", num(g.in_flight)), kv("answered", num(g.sent)),
        kv("answered / s", rate(perSecond(n.host, n.stats, "sent", g.sent), "")),
        kv("from journal", num(g.from_journal)), kv("duplicates", num(g.duplicates)),
        kv("contract errors", num(g.contract_errors), g.contract_errors ? "bad" : ""),
        kv("contract timeouts", num(g.contract_timeouts), g.contract_timeouts ? "bad" : ""),
        kv("failed", num(g.failed), g.failed ? "bad" : ""), kv("send errors", num(g.send_errors), g.send_errors ? "bad" : ""),
        kv("journal written", num(g.journaled)), kv("journal errors", num(g.journal_errors), g.journal_errors ? "bad" : ""),
        kv("sent marks pending", num(g.marks_pending)), kv("marks dropped", num(g.marks_dropped), g.marks_dropped ? "bad" : ""),
        kv("Prime streams opened", num(g.streams)), kv("throttled", num(g.throttled)),
      ];
      if (lat && typeof lat.count === "number") {
        cells.push(kv("tx latency p50", dur(lat.p50)), kv("tx latency p90", dur(lat.p90)),
          kv("tx latency p99", dur(lat.p99)), kv("latency samples", num(lat.count)));
      }
      if (d) {
        cells.push(kv("re-dispatched", num(d.redispatched)), kv("may have run twice", num(d.rerun), d.rerun ? "bad" : ""));
      }
      parts.push(el("div", { class: "kv", "data-gateway": n.host, "data-up": true }, ...cells));
      if (d) parts.push(workersTable(n, d, byHost));
    }
    $("gateways").replaceChildren(...parts);
  }

  function workersTable(gw, d, byHost) {
    const rows = [el("tr", {},
      el("th", {}, "worker"), el("th", {}, "state"), el("th", {}, "load"), el("th", { class: "num" }, "done"),
      el("th", { class: "num" }, "done / s"), el("th", { class: "num" }, "contract errors"),
      el("th", { class: "num" }, "timeouts"), el("th", {}, "contract processes"), el("th", {}, "note"))];
    for (const w of arr(d.workers).map(obj)) {
      const node = byHost.get(w.host);
      const sections = node ? sectionsOf(node) : {};
      const ws = sections.worker, ps = sections.processes;
      const up = w.up && (!node || node.up);
      const cap = w.capacity || 0;
      const bar = el("i", { class: cap && w.running >= cap ? "full" : "" });
      bar.style.width = (cap ? Math.min(100, (100 * w.running) / cap) : 0) + "%";
      const notes = [];
      if (w.draining) notes.push("draining");
      if (node && !node.up && node.error) notes.push(node.error);
      rows.push(el("tr", { class: up ? "" : "down", "data-worker": w.host, "data-up": up },
        el("td", { class: "host" }, short(w.host)),
        el("td", {}, el("span", { class: "badge " + (up ? "up" : "down") }, up ? "up" : "down")),
        el("td", {}, el("span", { class: "load" }, bar), w.running + " of " + cap),
        el("td", { class: "num" }, num(w.done)),
        el("td", { class: "num" }, rate(perSecond(gw.host, gw.stats, "done " + w.host, w.done), "")),
        el("td", { class: "num" + (ws && ws.contract_errors ? " bad" : "") }, ws ? num(ws.contract_errors) : "–"),
        el("td", { class: "num" + (ws && ws.contract_timeouts ? " bad" : "") }, ws ? num(ws.contract_timeouts) : "–"),
        el("td", {}, ps ? ps.running + " of " + ps.processes + " up, " + num(ps.starts) + " started" +
          (ps.wedged || ps.protocol_errs ? ", " + num(ps.wedged + ps.protocol_errs) + " killed" : "") : "–"),
        el("td", { class: "err" }, notes.join("; "))));
    }
    return el("table", {}, ...rows);
  }

  function render(mesh) {
    mesh = obj(mesh);
    mesh.nodes = arr(mesh.nodes).map(obj).filter((n) => typeof n.host === "string");
    const up = mesh.nodes.filter((n) => n.up).length;
    $("from").textContent = "seen from " + short(mesh.from) + " · " + mesh.nodes.length + " nodes, " + up + " up";
    renderNodes(mesh);
    renderMatrix(mesh);
    renderPipeline(mesh);
    remember(mesh);
  }

  function setPoll(state, text) {
    const p = $("poll");
    p.dataset.state = state;
    p.dataset.polls = String(polls);
    p.textContent = text;
    document.body.classList.toggle("stale", state === "error");
  }

  // One poll at a time: next is the timer of the next poll, and polling
  // tells that one runs now.
  let next = null, polling = false;
  function schedule(ms) {
    clearTimeout(next);
    next = setTimeout(poll, ms);
  }

  async function poll() {
    polling = true;
    const started = performance.now();
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    let mesh = null;
    try {
      const tok = token();
      const resp = await fetch("mesh", {
        headers: tok ? { Authorization: "Bearer " + tok } : {}, cache: "no-store", signal: ctl.signal,
      });
      if (resp.status === 401) {
        $("auth").hidden = false;
        setPoll("error", tok ? "the token was refused" : "this port wants its token");
      } else if (!resp.ok) {
        setPoll("error", "mesh: HTTP " + resp.status);
      } else {
        mesh = await resp.json();
      }
    } catch (e) {
      setPoll("error", "cannot reach " + location.host + ": " + (e && e.message ? e.message : e));
    } finally {
      clearTimeout(timer);
    }
    if (mesh !== null) {
      $("auth").hidden = true;
      polls++;
      try {
        render(mesh);
        setPoll("ok", "updated " + new Date().toLocaleTimeString());
      } catch (e) {
        setPoll("error", "cannot draw the mesh: " + (e && e.message ? e.message : e));
      }
    }
    polling = false;
    schedule(Math.max(0, POLL_MS - (performance.now() - started)));
  }

  $("auth").addEventListener("submit", (ev) => {
    ev.preventDefault();
    setToken($("token").value);
    $("token").value = "";
    if (!polling) schedule(0);
  });
  window.addEventListener("hashchange", () => {
    takeTokenFromAddress();
    if (!polling) schedule(0);
  });
  takeTokenFromAddress();
  poll();
})();
