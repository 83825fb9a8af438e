// spindle status page: plain JavaScript, no build step, no outside resources.
// Routes: "/" (status) and "/device/NAME" (one device's points). Data from the
// JSON API under /api/v1/, live updates from the server-sent events of
// /api/v1/events; KPI plots are inline SVG drawn here. Text goes in through
// textContent only (device and point names come from the config).
"use strict";

const LABELS = {
  en: {
    agent: "Agent", site: "Site", version: "Version", config: "Config hash", uptime: "Uptime",
    started: "Started", devices: "Devices", device: "Device", state: "State", since: "Since",
    last_poll: "Last poll", latency: "Latency (last / mean / max)", polls: "Polls",
    errors: "Errors", timeout: "timeout", exception: "exception", decode: "decode",
    disconnected: "disconnected", bus: "Bus / endpoint", bus_name: "Bus", protocol: "Protocol", profile: "Profile",
    online: "online", offline: "offline", unknown: "unknown", buses: "Serial buses",
    load_measured: "Measured load", load_estimated: "Estimated load", late_replies: "Late replies",
    no_buses: "No serial buses.", outbox: "Outbox", depth: "Depth", bytes: "Bytes",
    oldest: "Oldest age", backlog: "Backlog", drops: "Drops", gaps: "Gaps", mqtt: "MQTT",
    connected: "Connected", disconnected_state: "Disconnected", connects: "Connects",
    disconnects: "Disconnects", published: "Published", acked: "Acknowledged", kpis: "KPIs",
    no_kpis: "No KPIs configured.", last24: "last 24 h", windows: "windows", quality: "Quality",
    flags: "Flags", good: "good", partial: "partial", no_data: "no data", no_output: "no output",
    points: "Points", point: "Point", value: "Value", unit: "Unit", raw: "Raw registers",
    error: "Error", time: "Time", back: "← all devices", not_found: "No such device.",
    live: "live", reconnecting: "reconnecting", load_failed: "Could not load", s: "s",
    ms: "ms", clock: "Clock", clock_bad: "not plausible: no KPI window closes",
    history: "Local history", no_windows: "No windows in the last 24 h yet.",
  },
  zh: {
    agent: "网关", site: "站点", version: "版本", config: "配置哈希", uptime: "运行时间",
    started: "启动于", devices: "设备", device: "设备", state: "状态", since: "自",
    last_poll: "最近采集", latency: "采集耗时（最近 / 平均 / 最大）", polls: "采集次数",
    errors: "错误", timeout: "超时", exception: "异常", decode: "解码", disconnected: "断开",
    bus: "总线 / 地址", bus_name: "总线", protocol: "协议", profile: "设备模板", online: "在线", offline: "离线",
    unknown: "未知", buses: "串口总线", load_measured: "实测负载", load_estimated: "估算负载",
    late_replies: "迟到应答", no_buses: "没有串口总线。", outbox: "发件箱", depth: "条数",
    bytes: "字节", oldest: "最旧", backlog: "积压", drops: "丢弃", gaps: "缺口", mqtt: "MQTT",
    connected: "已连接", disconnected_state: "未连接", connects: "连接次数",
    disconnects: "断开次数", published: "已发布", acked: "已确认", kpis: "指标",
    no_kpis: "未配置指标。", last24: "最近 24 小时", windows: "个窗口", quality: "质量",
    flags: "标记", good: "良好", partial: "不完整", no_data: "无数据", no_output: "无产量",
    points: "测点", point: "测点", value: "值", unit: "单位", raw: "原始寄存器", error: "错误",
    time: "时间", back: "← 全部设备", not_found: "没有这个设备。", live: "实时",
    reconnecting: "重新连接中", load_failed: "无法加载", s: "秒", ms: "毫秒", clock: "时钟",
    clock_bad: "不可信：指标窗口暂不结算", history: "本地历史",
    no_windows: "最近 24 小时还没有窗口。",
  },
};
let L = LABELS.en;
let AGENT = {}; // the latest /api/v1/agent

// Plotted value of a KPI window, by kind (a window without one gets a mark at zero).
const KPI_VALUE = {
  energy_per_output: (w) => w.value,
  energy_consumption: (w) => w.kgce,
  cnc_coverage: (w) => (w.time_ratio ?? w.networked_ratio),
};
const KPI_UNIT = {
  energy_per_output: (w) => w.unit || "",
  energy_consumption: () => "kgce",
  cnc_coverage: () => "",
};
// How a plotted value reads (ratios as percentages).
const KPI_FORMAT = {
  cnc_coverage: (v) => (typeof v === "number" ? `${fmtNum(v * 100, 1)} %` : "–"),
};
const DAY_MS = 24 * 3600 * 1000;
// A plot spans at least this many windows (a young history grows from the right).
const MIN_PLOT_WINDOWS = 48;
const REFRESH_MS = 5000;
const MAX_HISTORY_PAGES = 10;

// ---------- small DOM helpers ----------
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}
function pad(n) { return String(n).padStart(2, "0"); }
function fmtTime(ts) {
  if (ts === null || ts === undefined) return "–";
  const d = new Date(ts);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
function fmtDateTime(ts) {
  if (ts === null || ts === undefined) return "–";
  const d = new Date(ts);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${fmtTime(ts)}`;
}
function fmtDuration(s) {
  if (s === null || s === undefined) return "–";
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${h}h ${m}m`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${s % 60}s`;
  return `${s}s`;
}
function fmtNum(v, digits) {
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return String(v);
  return v.toFixed(digits ?? 3).replace(/\.?0+$/, "");
}
function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1048576).toFixed(1)} MiB`;
}
function fmtValue(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "boolean") return v ? "true" : "false";
  return fmtNum(v, 4);
}
function fmtRaw(raw) {
  if (!raw) return "–";
  return raw.map((r) => `0x${r.toString(16).padStart(4, "0")}`).join(" ");
}

async function api(path) {
  const r = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (r.status === 401) {
    location.assign("/login");
    throw new Error("signed out");
  }
  if (!r.ok) {
    let msg = `${r.status}`;
    try { msg = (await r.json()).error || msg; } catch (_) { /* not JSON */ }
    const e = new Error(msg);
    e.status = r.status;
    throw e;
  }
  return r.json();
}

// ---------- live events ----------
const handlers = { availability: [], telemetry: [], kpi: [], health: [] };
const reopened = [];
let opens = 0;
function connectEvents() {
  const live = document.getElementById("live");
  const es = new EventSource("/api/v1/events");
  live.dataset.state = "connecting";
  live.textContent = L.reconnecting;
  es.onopen = () => {
    live.dataset.state = "open";
    live.textContent = L.live;
    // Events missed while the stream was down (the agent restarted, or it
    // dropped this lagging subscriber): catch up from the API.
    if (++opens > 1) for (const h of reopened) h();
  };
  es.onerror = () => {
    live.textContent = L.reconnecting;
    if (es.readyState === EventSource.CLOSED) {
      // The browser gave up (an answer other than a stream, e.g. 503 at
      // the subscriber cap): try again with a new stream a little later.
      live.dataset.state = "closed";
      setTimeout(connectEvents, 5000);
    } else {
      live.dataset.state = "connecting";
    }
  };
  for (const kind of Object.keys(handlers)) {
    es.addEventListener(kind, (ev) => {
      let data;
      try { data = JSON.parse(ev.data); } catch (_) { return; }
      for (const h of handlers[kind]) h(data);
    });
  }
}

// ---------- agent header ----------
function renderAgent(card, a) {
  card.replaceChildren(
    el("h2", { text: L.agent }),
    el("dl", { class: "facts" },
      fact(L.agent, a.agent, "agent-id"),
      fact(L.site, a.site),
      fact(L.version, a.version),
      fact(L.config, (a.config_hash || "").slice(0, 12), null, a.config_hash),
      fact(L.uptime, fmtDuration(a.uptime_s), "uptime"),
      fact(L.started, fmtDateTime(a.started_ts)),
    ),
  );
}
function fact(label, value, id, title, cls) {
  const dd = el("dd", { text: value ?? "–", id: id || null, title: title || null });
  return el("div", { class: cls || null }, el("dt", { text: label }), dd);
}

// ---------- devices table ----------
function stateCell(d) {
  const td = el("td", { class: "state-cell" });
  td.append(el("span", { class: "state", text: L[d.state] || d.state }));
  if (d.state === "offline" && d.reason) td.append(" ", el("span", { class: "reason", text: d.reason }));
  return td;
}
function deviceRow(d) {
  const tr = el("tr", { class: `device ${d.state}`, "data-device": d.name });
  const lat = d.latency_ms || {};
  const errs = d.errors || {};
  const errTotal = ["timeout", "exception", "decode", "disconnected"].reduce((s, k) => s + (errs[k] || 0), 0);
  const errText = errTotal === 0 ? "0" : ["timeout", "exception", "decode", "disconnected"]
    .filter((k) => errs[k]).map((k) => `${L[k]} ${errs[k]}`).join(", ");
  tr.append(
    el("td", null, el("a", { href: `/device/${encodeURIComponent(d.name)}`, text: d.name })),
    stateCell(d),
    el("td", { class: "last-poll num", text: fmtTime(d.last_poll_ts) }),
    el("td", { class: "num wide", text: `${fmtNum(lat.last, 1)} / ${fmtNum(lat.mean, 1)} / ${fmtNum(lat.max, 1)}` }),
    el("td", { class: "num wide", text: String(d.polls ?? 0) }),
    el("td", { class: errTotal ? "err" : "muted", text: errText }),
    el("td", { class: "wide mono", text: [d.bus, d.endpoint].filter(Boolean).join(" · ") || "–" }),
  );
  return tr;
}
function renderDevices(card, devices) {
  const tbody = el("tbody");
  for (const d of devices) tbody.append(deviceRow(d));
  const online = devices.filter((d) => d.state === "online").length;
  card.replaceChildren(
    el("h2", null, L.devices, el("span", { class: "sub", text: `${online} / ${devices.length} ${L.online}` })),
    el("div", { class: "scroll" }, el("table", { id: "devices" },
      el("thead", null, el("tr", null,
        el("th", { text: L.device }), el("th", { text: L.state }), el("th", { class: "num", text: L.last_poll }),
        el("th", { class: "num wide", text: `${L.latency} ${L.ms}` }), el("th", { class: "num wide", text: L.polls }),
        el("th", { text: L.errors }), el("th", { class: "wide", text: L.bus }))),
      tbody)),
  );
}

// ---------- buses, outbox, MQTT (from health) ----------
function pct(x) { return `${(x * 100).toFixed(1)} %`; }
function renderBuses(card, health) {
  const buses = Object.entries(health.buses || {});
  card.replaceChildren(el("h2", { text: L.buses }));
  if (buses.length === 0) { card.append(el("p", { class: "muted", text: L.no_buses })); return; }
  const tbody = el("tbody");
  for (const [name, b] of buses) {
    const bar = el("div", { class: "bar", title: `${L.load_measured} ${pct(b.busy_share)} · ${L.load_estimated} ${pct(b.load_estimated)}` });
    const fill = el("div", { class: "fill" });
    fill.style.width = `${Math.min(100, b.busy_share * 100)}%`;
    const est = el("div", { class: "est" });
    est.style.left = `${Math.min(100, b.load_estimated * 100)}%`;
    bar.append(fill, est);
    tbody.append(el("tr", { "data-bus": name },
      el("td", { text: name }),
      el("td", { class: "num measured", text: pct(b.busy_share) }),
      el("td", { class: "num estimated", text: pct(b.load_estimated) }),
      el("td", null, bar),
      el("td", { class: "num wide", text: String(b.late_replies) })));
  }
  card.append(el("div", { class: "scroll" }, el("table", null,
    el("thead", null, el("tr", null, el("th", { text: L.bus_name }), el("th", { class: "num", text: L.load_measured }),
      el("th", { class: "num", text: L.load_estimated }), el("th"), el("th", { class: "num wide", text: L.late_replies }))),
    tbody)));
}
function renderOutbox(card, health) {
  const o = health.outbox || {};
  const dropped = o.dropped || {};
  const drops = (dropped.outbox_full || 0) + (dropped.max_age || 0) + (dropped.store_damaged || 0);
  const m = health.mqtt || {};
  const connected = typeof AGENT.mqtt_connected === "boolean"
    ? AGENT.mqtt_connected : (m.connects || 0) > (m.disconnects || 0);
  card.replaceChildren(
    el("h2", { text: L.outbox }),
    el("dl", { class: "facts", id: "outbox" },
      fact(L.depth, String(o.depth ?? "–"), "outbox-depth"),
      fact(L.bytes, fmtBytes(o.bytes)),
      fact(L.oldest, o.oldest_age_s === null || o.oldest_age_s === undefined ? "–" : fmtDuration(o.oldest_age_s)),
      fact(L.backlog, String(o.backlog ?? "–")),
      fact(L.drops, String(drops), null, `outbox_full ${dropped.outbox_full || 0} · max_age ${dropped.max_age || 0} · store_damaged ${dropped.store_damaged || 0}`),
      fact(L.gaps, String(o.gaps ?? "–")),
    ),
    el("h2", { text: L.mqtt }),
    el("dl", { class: "facts", id: "mqtt" },
      el("div", null, el("dt", { text: L.state }),
        el("dd", null, el("span", { class: `state ${connected ? "online" : "offline"}`, text: connected ? L.connected : L.disconnected_state }))),
      fact(L.connects, String(m.connects ?? "–")),
      fact(L.disconnects, String(m.disconnects ?? "–")),
      fact(L.published, String(m.published ?? "–")),
      fact(L.acked, String(m.acked ?? "–")),
    ),
  );
  if (health.clock && health.clock.plausible === false) {
    card.append(el("p", { class: "error", text: `${L.clock}: ${L.clock_bad}` }));
  }
}

// ---------- KPI plots ----------
class KpiPlot {
  constructor(kind, name) {
    this.kind = kind;
    this.name = name;
    this.windows = new Map(); // window.start -> window payload
    this.card = el("div", { class: "card kpi", "data-kpi": `${kind}/${name}` });
  }
  add(w) {
    if (!w || !w.window) return;
    this.windows.set(w.window.start, w);
  }
  render() {
    const cutoff = Date.now() - DAY_MS;
    for (const start of [...this.windows.keys()]) if (this.windows.get(start).window.end < cutoff) this.windows.delete(start);
    const ws = [...this.windows.values()].sort((a, b) => a.window.start - b.window.start);
    const valueOf = KPI_VALUE[this.kind] || ((w) => w.value);
    const unitOf = KPI_UNIT[this.kind] || ((w) => w.unit || "");
    const show = KPI_FORMAT[this.kind] || ((v) => fmtNum(v, 4));
    const last = ws[ws.length - 1];
    const head = el("h2", null, `${this.kind} · ${this.name}`,
      el("span", { class: "sub", text: `${L.last24} · ${ws.length} ${L.windows}` }));
    const latest = el("div", { class: "latest" });
    if (last) {
      latest.append(show(valueOf(last)), " ", el("span", { class: "unit", text: `${unitOf(last)} · ${L[last.quality] || last.quality} · ${fmtTime(last.window.start)}–${fmtTime(last.window.end)}` }));
    }
    this.card.replaceChildren(head, latest, this.plot(ws, valueOf, unitOf, show),
      el("div", { class: "legend" }, el("span", { class: "q-good", text: L.good }),
        el("span", { class: "q-partial", text: L.partial }), el("span", { class: "q-none", text: `${L.no_data} / ${L.no_output}` })));
    if (ws.length === 0) this.card.append(el("p", { class: "muted", text: L.no_windows }));
  }
  plot(ws, valueOf, unitOf, show) {
    const W = 600, H = 160, left = 44, right = 8, top = 8, bottom = 20;
    const s = svg("svg", { class: "plot", viewBox: `0 0 ${W} ${H}`, role: "img", "data-kpi": `${this.kind}/${this.name}` });
    const pw = W - left - right, ph = H - top - bottom;
    s.append(svg("line", { class: "axis", x1: left, y1: top + ph, x2: left + pw, y2: top + ph }));
    s.append(svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: top + ph }));
    const marks = svg("g", { class: "marks" });
    s.append(marks);
    if (ws.length === 0) return s;
    const t1 = ws[ws.length - 1].window.end;
    const length = Math.max(1, ws[ws.length - 1].window.end - ws[ws.length - 1].window.start);
    const t0 = Math.min(ws[0].window.start, t1 - MIN_PLOT_WINDOWS * length);
    const span = Math.max(1, t1 - t0);
    const values = ws.map(valueOf).filter((v) => typeof v === "number" && Number.isFinite(v));
    let vmax = Math.max(0, ...values), vmin = Math.min(0, ...values);
    if (vmax === vmin) vmax = vmin + 1;
    const y = (v) => top + ph - ((v - vmin) / (vmax - vmin)) * ph;
    const label = (text, x, yy, anchor) => { const t = svg("text", { x, y: yy, "text-anchor": anchor }); t.textContent = text; s.append(t); };
    label(show(vmax), left - 4, top + 8, "end");
    label(show(vmin), left - 4, top + ph, "end");
    label(fmtTime(t0), left, H - 4, "start");
    label(fmtTime(t1), left + pw, H - 4, "end");
    for (const w of ws) {
      const x0 = left + ((w.window.start - t0) / span) * pw;
      const x1 = left + ((w.window.end - t0) / span) * pw;
      const width = Math.max(1, x1 - x0 - (x1 - x0 > 3 ? 1 : 0));
      const v = valueOf(w);
      const has = typeof v === "number" && Number.isFinite(v);
      const yTop = has ? Math.min(y(v), y(0)) : top + ph - 3;
      const height = has ? Math.max(1.5, Math.abs(y(v) - y(0))) : 3;
      const flags = w.flags || [];
      const r = svg("rect", {
        class: `mark q-${w.quality}${flags.length ? " flagged" : ""}`,
        x: x0.toFixed(2), y: yTop.toFixed(2), width: width.toFixed(2), height: height.toFixed(2),
        "data-start": w.window.start, "data-quality": w.quality,
      });
      const title = svg("title");
      title.textContent = `${fmtDateTime(w.window.start)} – ${fmtTime(w.window.end)}\n${L.value}: ${has ? show(v) : "–"} ${unitOf(w)}\n${L.quality}: ${L[w.quality] || w.quality}` +
        (flags.length ? `\n${L.flags}: ${flags.join(", ")}` : "");
      r.append(title);
      marks.append(r);
    }
    return s;
  }
}

async function loadHistory(plot) {
  const to = new Date();
  const from = new Date(to.getTime() - DAY_MS);
  let cursor = null;
  for (let page = 0; page < MAX_HISTORY_PAGES; page++) {
    const q = new URLSearchParams({ from: from.toISOString(), to: to.toISOString(), limit: "2000" });
    if (cursor) q.set("cursor", cursor);
    const r = await api(`/api/v1/kpi/${encodeURIComponent(plot.kind)}/${encodeURIComponent(plot.name)}/history?${q}`);
    for (const w of r.windows || []) plot.add(w);
    cursor = r.next;
    if (!cursor) break;
  }
}

// ---------- pages ----------
async function statusPage(main, agent) {
  const agentCard = el("section", { class: "card", id: "agent" });
  const devCard = el("section", { class: "card", id: "devices-card" });
  const busCard = el("section", { class: "card", id: "buses" });
  const outCard = el("section", { class: "card", id: "outbox-card" });
  const kpiCard = el("section", { class: "card-group", id: "kpis" });
  main.replaceChildren(agentCard, devCard, el("div", { class: "row2" }, outCard, busCard), kpiCard);
  renderAgent(agentCard, agent);

  let devices = new Map();
  let soon = null;
  const refreshDevices = async () => {
    const r = await api("/api/v1/devices");
    devices = new Map(r.devices.map((d) => [d.name, d]));
    renderDevices(devCard, r.devices);
  };
  const refreshHealth = async () => {
    const h = await api("/api/v1/health");
    renderOutbox(outCard, h);
    renderBuses(busCard, h);
  };
  // Live: availability turns a row at once; telemetry updates its last poll.
  handlers.availability.push((ev) => {
    const d = devices.get(ev.device);
    if (!d) return;
    d.state = ev.state;
    d.reason = ev.reason ?? null;
    d.since_ts = ev.ts;
    const row = devCard.querySelector(`tr[data-device="${CSS.escape(ev.device)}"]`);
    if (row) row.replaceWith(deviceRow(d));
    // Its error counts changed too: fetch them soon (one fetch for a burst of changes).
    clearTimeout(soon);
    soon = setTimeout(() => refreshDevices().catch(() => {}), 300);
  });
  handlers.telemetry.push((ev) => {
    const d = devices.get(ev.device);
    if (!d) return;
    d.last_poll_ts = ev.ts;
    const cell = devCard.querySelector(`tr[data-device="${CSS.escape(ev.device)}"] .last-poll`);
    if (cell) cell.textContent = fmtTime(ev.ts);
  });
  handlers.health.push((h) => { renderOutbox(outCard, h); renderBuses(busCard, h); });

  // KPI plots: events are buffered until the history is in, then merged by window start.
  const plots = new Map();
  const pending = [];
  let historyLoaded = false;
  handlers.kpi.push((ev) => {
    const p = plots.get(`${ev.kind}/${ev.name}`);
    if (!historyLoaded || !p) { pending.push(ev); return; }
    p.add(ev.window);
    p.render();
  });
  connectEvents();

  await Promise.all([refreshDevices(), refreshHealth()]);
  const kpi = await api("/api/v1/kpi");
  kpiCard.replaceChildren(el("h2", { class: "group-title", text: L.kpis }));
  const grid = el("div", { class: "kpis" });
  kpiCard.append(grid);
  if (kpi.kpi.length === 0) grid.append(el("p", { class: "muted", text: L.no_kpis }));
  for (const k of kpi.kpi) {
    const p = new KpiPlot(k.kind, k.name);
    plots.set(`${k.kind}/${k.name}`, p);
    if (k.window) p.add(k.window);
    grid.append(p.card);
  }
  await Promise.all([...plots.values()].map((p) => loadHistory(p).catch(() => {})));
  historyLoaded = true;
  for (const ev of pending.splice(0)) { const p = plots.get(`${ev.kind}/${ev.name}`); if (p) p.add(ev.window); }
  for (const p of plots.values()) p.render();
  reopened.push(() => {
    refreshDevices().catch(() => {});
    for (const p of plots.values()) loadHistory(p).then(() => p.render()).catch(() => {});
  });

  // Latency, error counts and the outbox change between events: refresh them now and then.
  setInterval(async () => {
    if (document.hidden) return;
    try {
      const [a] = await Promise.all([api("/api/v1/agent"), refreshDevices()]);
      AGENT = a;
      await refreshHealth();
      const up = document.getElementById("uptime");
      if (up) up.textContent = fmtDuration(a.uptime_s);
    } catch (_) { /* the next round tries again */ }
  }, REFRESH_MS);
}

function pointRow(p) {
  return el("tr", { class: p.error ? "point has-error" : "point", "data-point": p.name },
    el("td", { text: p.name }),
    el("td", { class: "num value mono", text: fmtValue(p.value) }),
    el("td", { class: "unit", text: p.unit || "" }),
    el("td", { class: "raw mono wide", text: fmtRaw(p.raw) }),
    el("td", { class: "error-cell err", text: p.error || "" }),
    el("td", { class: "num ts wide", text: fmtTime(p.ts) }));
}

async function devicePage(main, agent, name) {
  const head = el("section", { class: "card", id: "device" });
  const pts = el("section", { class: "card", id: "points-card" });
  main.replaceChildren(el("a", { class: "back", href: "/", text: L.back }), head, pts);
  document.title = `${name} · spindle`;
  let dev;
  const render = (d) => {
    dev = d;
    const lat = d.latency_ms || {};
    const errs = d.errors || {};
    const stateLine = el("span", { class: `state ${d.state}`, id: "device-state", text: L[d.state] || d.state });
    head.replaceChildren(
      el("h2", null, d.name, stateLine, d.state === "offline" && d.reason ? el("span", { class: "reason", text: d.reason }) : null),
      el("dl", { class: "facts" },
        fact(L.protocol, d.protocol), fact(L.bus, [d.bus, d.endpoint].filter(Boolean).join(" · ") || "–"),
        fact(L.profile, d.profile || "–"), fact(L.since, fmtDateTime(d.since_ts)),
        fact(L.last_poll, fmtDateTime(d.last_poll_ts), "device-last-poll"),
        fact(L.latency, `${fmtNum(lat.last, 1)} / ${fmtNum(lat.mean, 1)} / ${fmtNum(lat.max, 1)} ${L.ms}`),
        fact(L.polls, String(d.polls ?? 0)),
        fact(L.errors, ["timeout", "exception", "decode", "disconnected"].map((k) => `${L[k]} ${errs[k] || 0}`).join(" · "), null, null, "span2")),
    );
    const tbody = el("tbody");
    for (const p of d.points || []) tbody.append(pointRow(p));
    pts.replaceChildren(el("h2", { text: L.points }), el("div", { class: "scroll" }, el("table", { id: "points" },
      el("thead", null, el("tr", null, el("th", { text: L.point }), el("th", { class: "num", text: L.value }),
        el("th", { text: L.unit }), el("th", { class: "wide", text: L.raw }), el("th", { text: L.error }),
        el("th", { class: "num wide", text: L.time }))), tbody)));
  };
  handlers.telemetry.push((ev) => {
    if (!dev || ev.device !== name) return;
    dev.last_poll_ts = ev.ts;
    const lp = document.getElementById("device-last-poll");
    if (lp) lp.textContent = fmtDateTime(ev.ts);
    for (const p of ev.points || []) {
      const row = pts.querySelector(`tr[data-point="${CSS.escape(p.name)}"]`);
      if (!row) continue;
      const cell = row.querySelector(".value");
      const text = p.error ? "–" : fmtValue(p.value);
      if (cell.textContent !== text) {
        cell.textContent = text;
        cell.classList.remove("flash");
        void cell.offsetWidth; // restart the highlight
        cell.classList.add("flash");
      }
      row.querySelector(".error-cell").textContent = p.error || "";
      row.className = p.error ? "point has-error" : "point";
      row.querySelector(".ts").textContent = fmtTime(ev.ts);
    }
  });
  handlers.availability.push((ev) => {
    if (!dev || ev.device !== name) return;
    render({ ...dev, state: ev.state, reason: ev.reason ?? null, since_ts: ev.ts });
  });
  connectEvents();
  try {
    render(await api(`/api/v1/devices/${encodeURIComponent(name)}`));
  } catch (e) {
    head.replaceChildren(el("p", { class: "error", text: e.status === 404 ? L.not_found : `${L.load_failed}: ${e.message}` }));
    return;
  }
  reopened.push(() => api(`/api/v1/devices/${encodeURIComponent(name)}`).then(render).catch(() => {}));
  // Raw registers and counts come with the full view: refresh it now and then.
  setInterval(async () => {
    if (document.hidden) return;
    try { render(await api(`/api/v1/devices/${encodeURIComponent(name)}`)); } catch (_) { /* next round */ }
  }, REFRESH_MS);
}

async function start() {
  const main = document.getElementById("main");
  let agent;
  try {
    agent = await api("/api/v1/agent");
  } catch (e) {
    main.replaceChildren(el("p", { class: "error", text: `${L.load_failed}: ${e.message}` }));
    return;
  }
  AGENT = agent;
  L = LABELS[agent.language] || LABELS.en;
  document.documentElement.lang = agent.language === "zh" ? "zh-CN" : "en";
  document.getElementById("agent-name").textContent = `${agent.site} / ${agent.agent}`;
  const m = location.pathname.match(/^\/device\/([^/]+)\/?$/);
  try {
    if (m) await devicePage(main, agent, decodeURIComponent(m[1]));
    else await statusPage(main, agent);
    document.body.dataset.ready = "true";
  } catch (e) {
    main.append(el("p", { class: "error", text: `${L.load_failed}: ${e.message}` }));
  }
}

start();
