'use strict';
// The household's page: each line's rates (a minute of them), its cap and
// last speed test, and the connections now, from /status.json (what
// `gw-agent status --json` prints) every second. Text goes in with
// textContent only: names come from the network (a neighbour's path).
const errors = [];
function noteError(msg) {
  errors.push(msg);
  const e = document.getElementById('errors');
  e.hidden = false;
  e.textContent = errors.join('\n');
}
window.addEventListener('error', (ev) => noteError('error: ' + ev.message));
window.addEventListener('unhandledrejection', (ev) => noteError('promise: ' + ev.reason));

const KEEP = 61;              // samples per line: a minute of rates
const hist = new Map();       // line name -> [{t, rx, tx}]
let polls = 0;

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('data-')) e.setAttribute(k, String(v));
    else e[k] = v;
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
}
function bytes(v) {
  const u = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (v >= 1000 && i < u.length - 1) { v /= 1000; i++; }
  return (i ? v.toFixed(v < 10 ? 2 : 1) : String(v)) + ' ' + u[i];
}
function rate(bps) {
  if (bps === null) return '-';
  return bps >= 1e6 ? (bps / 1e6).toFixed(1) + ' Mbit/s' : (bps / 1e3).toFixed(0) + ' kbit/s';
}
function dur(s) {
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
  return h ? h + ' h ' + m + ' min' : m ? m + ' min ' + (s % 60) + ' s' : s + ' s';
}
// A value shown for people, with the exact figure for machines.
function val(key, raw, text) {
  return el('dd', { 'data-k': key, 'data-v': raw === null ? '' : raw }, text);
}

function rates(name) {
  const h = hist.get(name) || [];
  if (h.length < 2) return { down: null, up: null };
  const a = h[h.length - 2], b = h[h.length - 1], dt = (b.t - a.t) / 1000;
  if (dt <= 0) return { down: null, up: null };
  return { down: Math.max(0, (b.rx - a.rx) * 8 / dt), up: Math.max(0, (b.tx - a.tx) * 8 / dt) };
}

function graph(name) {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  const h = hist.get(name) || [];
  const pts = { down: [], up: [] };
  for (let i = 1; i < h.length; i++) {
    const dt = (h[i].t - h[i - 1].t) / 1000;
    if (dt <= 0) continue;
    pts.down.push(Math.max(0, (h[i].rx - h[i - 1].rx) * 8 / dt));
    pts.up.push(Math.max(0, (h[i].tx - h[i - 1].tx) * 8 / dt));
  }
  const max = Math.max(1e5, ...pts.down, ...pts.up);
  svg.setAttribute('class', 'graph');
  svg.setAttribute('viewBox', '0 0 600 90');
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('data-k', 'graph');
  svg.setAttribute('data-samples', String(pts.down.length));
  svg.setAttribute('data-max-bps', String(Math.round(max)));
  for (const k of ['down', 'up']) {
    const line = document.createElementNS(NS, 'polyline');
    const n = pts[k].length, off = KEEP - 1 - n;
    line.setAttribute('class', k);
    line.setAttribute('points', pts[k].map((v, i) =>
      ((off + i) * 600 / (KEEP - 2)).toFixed(1) + ',' + (88 - v / max * 84).toFixed(1)).join(' '));
    svg.append(line);
  }
  return svg;
}

async function speedtest(name, button) {
  button.disabled = true;
  button.textContent = 'Testing\u2026';
  try {
    const r = await fetch('/speedtest?line=' + encodeURIComponent(name),
                          { method: 'POST', credentials: 'same-origin',
                            headers: { 'X-Requested-With': 'gw-agent' } });
    const t = await r.text();
    if (!r.ok) notice('Speed test of ' + name + ': ' + t.trim());
  } finally {
    button.disabled = false;
    button.textContent = 'Test speed';
  }
}

function notice(text) {
  const n = document.getElementById('notice');
  n.hidden = !text;
  n.textContent = text || '';
}

function lineCard(l, s) {
  const fam = l.families[0] || {};
  const up = (fam.state || '').startsWith('up');
  const r = rates(l.name);
  const card = el('section', { class: 'line' + (up ? '' : ' down'), 'data-line': l.name },
    el('h2', null, l.name, el('span', { class: 'mode', 'data-k': 'mode' }, l.mode)));
  const dl = el('dl', null,
    el('dt', null, 'State'), val('state', fam.state || '', fam.state || '-'),
    el('dt', null, 'Address'), val('address', fam.address || '', fam.address || '-'),
    el('dt', null, 'Delay'), val('rtt_ms', fam.probe_rtt_ms === null || fam.probe_rtt_ms === undefined ? null : fam.probe_rtt_ms,
                                 fam.probe_rtt_ms ? fam.probe_rtt_ms.toFixed(1) + ' ms' : '-'),
    el('dt', null, 'Down now'), val('down_bps', r.down === null ? null : Math.round(r.down), rate(r.down)),
    el('dt', null, 'Up now'), val('up_bps', r.up === null ? null : Math.round(r.up), rate(r.up)),
    el('dt', null, 'Received'), val('rx_bytes', l.rx_bytes, bytes(l.rx_bytes)),
    el('dt', null, 'Sent'), val('tx_bytes', l.tx_bytes, bytes(l.tx_bytes)));
  const g = graph(l.name);
  card.append(dl, g,
    el('div', { class: 'legend' }, el('span', { class: 'd' }, '\u2014 down'), el('span', { class: 'u' }, '\u2014 up'),
       el('span', null, 'top: ' + rate(Number(g.getAttribute('data-max-bps'))) + ', last minute')));
  if (l.cap) {
    const pct = l.cap.bytes ? Math.min(100, l.cap.used_bytes * 100 / l.cap.bytes) : 0;
    const left = Math.max(0, l.cap.bytes - l.cap.used_bytes);
    card.append(el('dl', null,
      el('dt', null, 'Data cap'), val('cap_used', l.cap.used_bytes, bytes(l.cap.used_bytes) + ' of ' + bytes(l.cap.bytes)),
      el('dt', null, 'Left'), val('cap_left', left, bytes(left) + (l.cap.reached ? ' (reached: ' + l.cap.reached + ')' : ''))),
      el('div', { class: 'bar' + (pct >= 80 ? ' warn' : '') }, el('div', null)));
    card.lastChild.firstChild.style.width = pct.toFixed(1) + '%';
  }
  const st = (s.speedtests || {})[l.name];
  const b = el('button', { type: 'button' }, st && st.running ? 'Testing\u2026' : 'Test speed');
  b.disabled = !!(st && st.running) || l.neighbour;
  b.addEventListener('click', () => speedtest(l.name, b));
  card.append(el('dl', null,
    el('dt', null, 'Speed test'),
    val('speedtest', st && st.down_bps ? st.down_bps : null,
        st && st.running ? 'running\u2026'
          : st && st.error ? 'failed: ' + st.error
          : st && st.down_bps ? rate(st.down_bps) + ' down, ' + rate(st.up_bps) + ' up'
            + (st.at ? ' (' + new Date(st.at * 1000).toLocaleString() + ')' : '')
          : 'none yet')), b);
  return card;
}

function render(s) {
  const snap = document.getElementById('snap');
  snap.dataset.time = String(s.time_ms);
  snap.textContent = new Date(s.time_ms).toLocaleTimeString();
  const f = s.flows_summary;
  document.getElementById('summary').textContent =
    'Up ' + dur(s.uptime_s) + ' \u00b7 ' + f.active + ' connections now, ' + f.intercepted
    + ' since start (' + f.via_concentrator + ' over all lines, ' + f.direct_fallback + ' direct)';
  const lines = document.getElementById('lines');
  const seen = new Set();
  for (const l of s.lines) {
    seen.add(l.name);
    const h = hist.get(l.name) || [];
    if (!h.length || h[h.length - 1].t !== s.time_ms) h.push({ t: s.time_ms, rx: l.rx_bytes, tx: l.tx_bytes });
    while (h.length > KEEP) h.shift();
    hist.set(l.name, h);
  }
  for (const k of hist.keys()) if (!seen.has(k)) hist.delete(k);
  lines.replaceChildren(...s.lines.map((l) => lineCard(l, s)));
  const tb = document.querySelector('#flows tbody');
  const flows = s.flows || [];
  tb.replaceChildren(...flows.map((x) => {
    const via = [...new Set((x.subflows || []).map((y) => y.line))].join(', ');
    return el('tr', { 'data-flow': x.client + ' ' + x.destination },
      el('td', null, x.client), el('td', null, x.destination), el('td', null, x.state),
      el('td', { class: 'num' }, bytes(x.up_bytes)), el('td', { class: 'num' }, bytes(x.down_bytes)),
      el('td', { 'data-k': 'lines' }, via || '-'));
  }));
  document.getElementById('flows-note').textContent =
    flows.length < f.active ? 'Showing ' + flows.length + ' of ' + f.active + '.' : '';
  const cb = document.getElementById('classes');
  cb.replaceChildren(...(s.classes || []).map((c) => el('li', null,
    c.name + ': out of ' + (c.line || 'the main route') + (c.domains && c.domains.length ? ' (' + c.domains.join(', ') + ')' : ''))));
  document.getElementById('classes-box').hidden = !(s.classes || []).length;
  document.body.dataset.polls = String(++polls);
}

async function poll() {
  try {
    const r = await fetch('/status.json', { credentials: 'same-origin', cache: 'no-store' });
    if (r.status === 403) {
      notice('This page needs its address with the token: on the router, `gw-agent status` prints it.');
      return;
    }
    if (!r.ok) { notice('The agent answered ' + r.status); return; }
    render(await r.json());
    notice('');
  } catch (e) {
    notice('Cannot reach the agent (' + e.message + ')');
  }
}
poll();
setInterval(poll, 1000);
