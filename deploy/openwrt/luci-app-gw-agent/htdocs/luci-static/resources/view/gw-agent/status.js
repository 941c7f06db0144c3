'use strict';
'require view';
'require fs';
'require poll';
'require ui';

// Status > Lines: what the agent's own page shows (gw-agent status --json),
// inside LuCI, behind the router's login: each line's rates now and over
// the last minutes, its cap and last speed test (with a button), and the
// connections now. Names come from the network: text nodes only.

var KEEP = 31;        // samples per line (2 s apart: a minute)
var hist = {};

function bytes(v) {
	var u = ['B', 'kB', 'MB', 'GB', 'TB'], i = 0;
	while (v >= 1000 && i < u.length - 1) { v /= 1000; i++; }
	return (i ? v.toFixed(v < 10 ? 2 : 1) : String(v)) + ' ' + u[i];
}

function rate(bps) {
	if (bps == null) return '-';
	return bps >= 1e6 ? (bps / 1e6).toFixed(1) + ' Mbit/s' : (bps / 1e3).toFixed(0) + ' kbit/s';
}

function status() {
	return fs.exec_direct('/usr/sbin/gw-agent', [ 'status', '--json' ], 'json');
}

function remember(s) {
	(s.lines || []).forEach(function(l) {
		var h = hist[l.name] || (hist[l.name] = []);
		if (!h.length || h[h.length - 1].t !== s.time_ms)
			h.push({ t: s.time_ms, rx: l.rx_bytes, tx: l.tx_bytes });
		while (h.length > KEEP) h.shift();
	});
}

function rates(name) {
	var h = hist[name] || [], out = [];
	for (var i = 1; i < h.length; i++) {
		var dt = (h[i].t - h[i - 1].t) / 1000;
		if (dt > 0)
			out.push({ down: Math.max(0, (h[i].rx - h[i - 1].rx) * 8 / dt),
				   up: Math.max(0, (h[i].tx - h[i - 1].tx) * 8 / dt) });
	}
	return out;
}

function spark(name) {
	var r = rates(name), max = 1e5, ns = 'http://www.w3.org/2000/svg';
	r.forEach(function(x) { max = Math.max(max, x.down, x.up); });
	var svg = document.createElementNS(ns, 'svg');
	svg.setAttribute('viewBox', '0 0 300 40');
	svg.setAttribute('width', '300');
	svg.setAttribute('height', '40');
	svg.setAttribute('data-samples', String(r.length));
	[ [ 'down', '#2a6fdb' ], [ 'up', '#e07b00' ] ].forEach(function(k) {
		var p = document.createElementNS(ns, 'polyline'), off = KEEP - 1 - r.length;
		p.setAttribute('fill', 'none');
		p.setAttribute('stroke', k[1]);
		p.setAttribute('points', r.map(function(x, i) {
			return ((off + i) * 300 / (KEEP - 2)).toFixed(1) + ',' + (39 - x[k[0]] / max * 37).toFixed(1);
		}).join(' '));
		svg.appendChild(p);
	});
	return svg;
}

function speedtest(name, ev) {
	ev.target.disabled = true;
	return fs.exec('/usr/sbin/gw-agent', [ 'speedtest', name ]).then(function(res) {
		ui.addNotification(null, E('pre', {}, (res.stdout || '') + (res.stderr || '')), res.code ? 'warning' : 'info');
	}).finally(function() { ev.target.disabled = false; });
}

function row(l, s) {
	var f = (l.families || [])[0] || {}, r = rates(l.name), now = r.length ? r[r.length - 1] : null;
	var st = (s.speedtests || {})[l.name], cap = '-';
	if (l.cap)
		cap = bytes(l.cap.used_bytes) + ' / ' + bytes(l.cap.bytes) + (l.cap.reached ? ' (' + l.cap.reached + ')' : '');
	return E('tr', { 'class': 'tr', 'data-line': l.name }, [
		E('td', { 'class': 'td' }, l.name),
		E('td', { 'class': 'td' }, l.mode),
		E('td', { 'class': 'td' }, f.state || '-'),
		E('td', { 'class': 'td' }, f.address || '-'),
		E('td', { 'class': 'td' }, f.probe_rtt_ms ? f.probe_rtt_ms.toFixed(1) + ' ms' : '-'),
		E('td', { 'class': 'td', 'data-k': 'down_bps' }, now ? rate(now.down) : '-'),
		E('td', { 'class': 'td', 'data-k': 'up_bps' }, now ? rate(now.up) : '-'),
		E('td', { 'class': 'td' }, spark(l.name)),
		E('td', { 'class': 'td', 'data-k': 'bytes' }, bytes(l.rx_bytes) + ' / ' + bytes(l.tx_bytes)),
		E('td', { 'class': 'td' }, cap),
		E('td', { 'class': 'td' }, st ? (st.running ? _('running') : st.error ? st.error :
			rate(st.down_bps) + ' / ' + rate(st.up_bps)) : '-'),
		E('td', { 'class': 'td' }, l.neighbour ? '' : E('button', {
			'class': 'btn cbi-button', 'click': ui.createHandlerFn(this, speedtest, l.name)
		}, _('Test speed')))
	]);
}

function table(s) {
	var t = E('table', { 'class': 'table', 'id': 'gw-agent-lines' }, [
		E('tr', { 'class': 'tr table-titles' }, [ _('Line'), _('Mode'), _('State'), _('Address'),
			_('Delay'), _('Down'), _('Up'), _('Last minute'), _('Received / sent'), _('Data cap'),
			_('Speed test (down / up)'), '' ].map(function(h) { return E('th', { 'class': 'th' }, h); }))
	]);
	(s.lines || []).forEach(function(l) { t.appendChild(row(l, s)); });
	return t;
}

function flows(s) {
	var t = E('table', { 'class': 'table', 'id': 'gw-agent-flows' }, [
		E('tr', { 'class': 'tr table-titles' }, [ _('Device'), _('Destination'), _('How'), _('Up'),
			_('Down'), _('Lines') ].map(function(h) { return E('th', { 'class': 'th' }, h); }))
	]);
	(s.flows || []).forEach(function(x) {
		var seen = {};
		(x.subflows || []).forEach(function(y) { seen[y.line] = true; });
		t.appendChild(E('tr', { 'class': 'tr' }, [ x.client, x.destination, x.state, bytes(x.up_bytes),
			bytes(x.down_bytes), Object.keys(seen).join(', ') || '-' ].map(function(v) {
			return E('td', { 'class': 'td' }, v);
		})));
	});
	return t;
}

return view.extend({
	load: function() {
		return status().catch(function(e) { return { error: e.message }; });
	},

	render: function(s) {
		var box = E('div', { 'id': 'gw-agent' });
		var draw = function(s) {
			if (!s || s.error || !s.lines) {
				box.replaceChildren(E('p', {}, _('The agent does not answer: ') + (s && s.error || '')));
				return;
			}
			remember(s);
			var f = s.flows_summary || {};
			box.replaceChildren(
				E('p', {}, _('Connections now: ') + f.active + ', ' + _('since start: ') + f.intercepted),
				table(s),
				E('h3', {}, _('Connections now')),
				flows(s));
		};
		draw(s);
		poll.add(function() { return status().then(draw).catch(function() {}); }, 2);
		return E('div', { 'class': 'cbi-map' }, [
			E('h2', {}, _('Lines')),
			E('div', { 'class': 'cbi-map-descr' }, _('Each line of the hybrid access, what it carries now, its data cap and its last speed test.')),
			box
		]);
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
