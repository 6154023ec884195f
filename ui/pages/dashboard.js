// Dashboard: events/s by verb over time; top users, resources and namespaces;
// 4xx/5xx and forbidden rates; request latency percentiles by resource (the
// performance-tuning view); ingest rate and forwarding-sink lag.

import { api, ApiError } from '../api.js';
import { lineChart, PALETTE } from '../charts.js';
import { histogramStats, bounds } from './search.js';
import {
  h, mount, href, fmtNum, fmtLatency, fmtDuration, RANGES, userHref,
} from '../util.js';

function topCard(id, title, rep, link) {
  const max = rep.rows.length ? rep.rows[0].count : 1;
  return h('div', { class: 'card' }, h('h3', {}, title),
    h('table', { class: 'bars', id }, h('tbody', {}, rep.rows.map((r) => {
      const k = r.key[0] || '(none)';
      const bar = h('div', { class: 'barfill' });
      bar.style.width = `${Math.max(1, (r.count / max) * 100)}%`;
      return h('tr', {}, h('td', {}, link ? h('a', { href: link(r.key[0]) }, k) : k),
        h('td', { class: 'num' }, fmtNum(r.count)), h('td', { class: 'bar' }, bar));
    }))));
}

async function sinksCard() {
  let sinks;
  try {
    sinks = (await api('/api/v1/sinks')).sinks;
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) sinks = [];
    else return h('div', { class: 'card' }, h('h3', {}, 'Forwarding sinks'), h('p', { class: 'error' }, e.message));
  }
  return h('div', { class: 'card', id: 'sinks' }, h('h3', {}, 'Forwarding sinks'),
    sinks.length ? h('table', {}, h('thead', {}, h('tr', {}, ['Sink', 'Type', 'Up', 'Lag (events)', 'Lag', 'Sent', 'Failed', 'Last error'].map((c) => h('th', {}, c)))),
      h('tbody', {}, sinks.map((s) => h('tr', {},
        h('td', {}, s.name), h('td', {}, s.type),
        h('td', { class: s.up ? 'ok' : 'bad' }, s.up ? 'up' : 'down'),
        h('td', { class: 'num' }, fmtNum(s.lag_events)), h('td', { class: 'num' }, fmtDuration(s.lag_seconds)),
        h('td', { class: 'num' }, fmtNum(s.sent)), h('td', { class: 'num' }, fmtNum(s.failed)),
        h('td', { class: 'wrap error' }, s.last_error || '')))))
      : h('p', { class: 'muted' }, 'No sinks configured.'));
}

function kpi(id, value, label, cls = '') {
  return h('div', { class: 'kpi' }, h('div', { class: `v ${cls}`, id }, value), h('div', { class: 'l' }, label));
}

export async function render(main, r, ctx) {
  const p = r.params;
  const range = p.get('range') || '';
  const b = bounds(p);
  const rangeSel = h('select', { id: 'range', onchange: (e) => { location.hash = href('dashboard', { range: e.target.value }); } },
    RANGES.filter(([v]) => v !== 'custom').map(([v, l]) => h('option', { value: v, selected: v === range }, l)));
  const kpis = h('div', { class: 'kpis', id: 'kpis' });
  const slots = { verbs: h('div', {}), tops: h('div', { class: 'grid' }), lat: h('div', {}), sinks: h('div', {}) };
  mount(main, h('div', { class: 'row' }, h('h1', {}, 'Dashboard'), h('span', { class: 'spacer' }), rangeSel),
    kpis, slots.verbs, slots.tops, slots.lat, slots.sinks);

  const status = async () => {
    const [st, codes] = await Promise.all([api('/api/v1/status'), codesP]);
    if (!ctx.current()) return;
    const total = codes.total || 0;
    let c4 = 0, c5 = 0, c403 = 0;
    for (const row of codes.rows) {
      const c = Number(row.key[0]);
      if (c >= 400 && c < 500) c4 += row.count;
      if (c >= 500) c5 += row.count;
      if (c === 403) c403 += row.count;
    }
    const pct = (n) => (total ? `${((n / total) * 100).toFixed(2)}%` : '–');
    mount(kpis,
      kpi('kpi-total', fmtNum(total), 'events in range'),
      kpi('kpi-4xx', pct(c4), '4xx rate', c4 ? 'code-4' : ''),
      kpi('kpi-5xx', pct(c5), '5xx rate', c5 ? 'code-5' : ''),
      kpi('kpi-403', pct(c403), 'forbidden (403) rate', c403 ? 'code-4' : ''),
      kpi('kpi-ingest', `${fmtNum(st.ingest_events_per_sec)}/s`, 'ingest rate (last minute)'),
      kpi('kpi-tree', fmtNum(st.tree_size), 'records stored'),
      kpi('kpi-cp', fmtDuration(st.checkpoint_age_seconds), 'checkpoint age'));
  };
  const codesP = api('/api/v1/stats', { params: { ...b, by: 'code', top: 100 } });
  const tops = Promise.all(['user', 'resource', 'namespace'].map((by) => api('/api/v1/stats', { params: { ...b, by, top: 10 } })))
    .then(([u, res, ns]) => {
      if (!ctx.current()) return;
      mount(slots.tops,
        topCard('top-users', 'Top users', u, (k) => userHref(k)),
        topCard('top-resources', 'Top resources', res, (k) => href('search', { q: `resource=${JSON.stringify(k)}`, range })),
        topCard('top-namespaces', 'Top namespaces', ns, (k) => href('search', { q: `ns=${JSON.stringify(k)}`, range })));
    });
  const latency = api('/api/v1/stats', { params: { ...b, by: 'resource', top: 15, latency: true } }).then((rep) => {
    if (!ctx.current()) return;
    const max = Math.max(1, ...rep.rows.map((x) => (x.latency ? x.latency.p99 : 0)));
    mount(slots.lat, h('div', { class: 'card' }, h('h3', {}, 'Request latency by resource (slowest p99 first is where tuning pays)'),
      h('table', { id: 'latency' }, h('thead', {}, h('tr', {}, ['Resource', 'Requests', 'p50', 'p90', 'p99', ''].map((c) => h('th', { class: c && c !== 'Resource' ? 'num' : '' }, c)))),
        h('tbody', {}, [...rep.rows].sort((a, z) => (z.latency ? z.latency.p99 : 0) - (a.latency ? a.latency.p99 : 0)).map((x) => {
          const l = x.latency || {};
          const bar = h('div', { class: 'barfill' });
          bar.style.width = `${Math.max(1, ((l.p99 || 0) / max) * 100)}%`;
          return h('tr', {}, h('td', {}, x.key[0] || '(non-resource)'), h('td', { class: 'num' }, fmtNum(x.count)),
            h('td', { class: 'num' }, fmtLatency(l.p50)), h('td', { class: 'num' }, fmtLatency(l.p90)),
            h('td', { class: 'num' }, fmtLatency(l.p99)), h('td', { class: 'bar' }, bar));
        })))));
  });
  const verbs = histogramStats('', b, 60, { by: 'verb', top: 1000 }).then((hs) => {
    if (!hs) { mount(slots.verbs, h('div', { class: 'card' }, h('p', { class: 'muted' }, 'No events in this range.'))); return; }
    const { st: rep, x0, x1, every, us } = hs;
    if (!ctx.current()) return;
    const byVerb = new Map();
    for (const row of rep.rows) {
      const v = row.key[0] || '(none)';
      if (!byVerb.has(v)) byVerb.set(v, new Map());
      byVerb.get(v).set(row.bucket, row.count);
    }
    const verbsSorted = [...byVerb.entries()].map(([v, m]) => [v, m, [...m.values()].reduce((a, z) => a + z, 0)])
      .sort((a, z) => z[2] - a[2]).slice(0, 8);
    const series = verbsSorted.map(([name, m]) => {
      const points = [];
      for (let t = x0; t < x1; t += us) points.push({ t: t + us / 2, v: (m.get(t) || 0) / (us / 1e6) });
      return { name, points };
    });
    mount(slots.verbs, h('div', { class: 'card', id: 'verb-chart' }, h('h3', {}, `Events per second by verb (${every} buckets)`),
      lineChart(series, { x0, x1 }),
      h('div', { class: 'legend' }, series.map((s, i) => {
        const sw = h('i');
        sw.style.background = PALETTE[i % PALETTE.length];
        return h('span', {}, sw, s.name);
      }))));
  });
  await Promise.all([status(), tops, latency, verbs, sinksCard().then((c) => { if (ctx.current()) mount(slots.sinks, c); })]);
  const timer = setInterval(() => { status().catch(() => {}); }, 5000);
  ctx.onCleanup(() => clearInterval(timer));
}
