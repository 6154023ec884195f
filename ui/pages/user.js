// User activity: sessions on a timeline, what the user touched, what was
// denied, and the least-privilege RBAC that grants exactly what they did.

import { api } from '../api.js';
import { timeline } from '../charts.js';
import { h, mount, fmtTime, fmtNum, href, objectHref, objectLabel, parseMicros, isoMicros } from '../util.js';

function sum(into, obj) {
  for (const [k, v] of Object.entries(obj || {})) into.set(k, (into.get(k) || 0) + v);
}

function topTable(id, title, map, link) {
  const rows = [...map.entries()].sort((a, b) => b[1] - a[1]).slice(0, 15);
  const max = rows.length ? rows[0][1] : 1;
  return h('div', { class: 'card' }, h('h3', {}, title),
    rows.length ? h('table', { class: 'bars', id }, h('tbody', {}, rows.map(([k, n]) => {
      const bar = h('div', { class: 'barfill' });
      bar.style.width = `${Math.max(1, (n / max) * 100)}%`;
      return h('tr', {}, h('td', {}, link ? h('a', { href: link(k) }, k) : k), h('td', { class: 'num' }, fmtNum(n)), h('td', { class: 'bar' }, bar));
    }))) : h('p', { class: 'muted' }, 'none'));
}

export async function render(main, r) {
  const user = decodeURIComponent(r.rest);
  const q = `user=${JSON.stringify(user)}`;
  mount(main, h('p', { class: 'loading' }, 'Loading activity…'));
  const [hist, denied, rbac] = await Promise.all([
    api('/api/v1/history', { params: { user } }),
    api('/api/v1/events', { params: { q: `${q} code>=400`, limit: 50 } }),
    api(`/api/v1/users/${encodeURIComponent(user)}/rbac`).catch((e) => ({ error: e.message })),
  ]);
  const sessions = hist.sessions;
  const verbs = new Map(), resources = new Map(), namespaces = new Map();
  let requests = 0, deniedN = 0;
  for (const s of sessions) {
    sum(verbs, s.verbs);
    sum(resources, s.resources);
    for (const n of s.namespaces) namespaces.set(n, (namespaces.get(n) || 0) + 1);
    requests += s.requests;
    deniedN += s.denied;
  }
  const head = h('div', { class: 'card' },
    h('h1', {}, `Activity of ${user}`),
    h('p', { class: 'muted', id: 'user-summary' },
      `${fmtNum(requests)} requests in ${sessions.length} session${sessions.length === 1 ? '' : 's'} · ${fmtNum(deniedN)} denied · `,
      h('a', { href: href('search', { q }) }, 'search all')));
  if (sessions.length) {
    const spans = sessions.map((s) => ({ t0: parseMicros(s.start), t1: parseMicros(s.end), title: `${fmtTime(s.start)} – ${fmtTime(s.end)}: ${s.requests} requests` }));
    head.append(timeline([], { x0: spans[0].t0, x1: spans[spans.length - 1].t1 + 1, spans }));
  }
  const sessTable = h('div', { class: 'card' }, h('h3', {}, 'Sessions'), h('table', { id: 'sessions' },
    h('thead', {}, h('tr', {}, ['Start', 'End', 'Requests', 'Denied', 'Verbs', 'Namespaces', 'Clusters', 'Source IPs'].map((c) => h('th', {}, c)))),
    h('tbody', {}, [...sessions].reverse().slice(0, 200).map((s) => h('tr', {},
      h('td', { class: 'mono' }, h('a', { href: href('search', { q, range: 'custom', since: s.start, until: isoMicros(parseMicros(s.end) + 1) }) }, fmtTime(s.start))),
      h('td', { class: 'mono' }, fmtTime(s.end)),
      h('td', { class: 'num' }, fmtNum(s.requests)),
      h('td', { class: `num ${s.denied ? 'code-4' : ''}` }, fmtNum(s.denied)),
      h('td', { class: 'wrap' }, Object.entries(s.verbs).map(([k, v]) => `${k} ${v}`).join(', ')),
      h('td', { class: 'wrap' }, s.namespaces.join(', ')),
      h('td', {}, s.clusters.join(', ')),
      h('td', { class: 'mono wrap' }, s.ips.join(', ')))))));
  const deniedTable = h('div', { class: 'card' }, h('h3', {}, 'Denied requests (newest 50)'),
    denied.events.length ? h('table', { id: 'denied' }, h('tbody', {}, denied.events.map((it) => {
      const e = it.event, o = e.objectRef || {}, { res, nsName } = objectLabel(o), oh = objectHref(o);
      return h('tr', {},
        h('td', { class: 'mono' }, h('a', { href: `#/event/${encodeURIComponent(e.auditID)}` }, fmtTime(it.time))),
        h('td', {}, e.verb), h('td', {}, res || e.requestURI),
        h('td', {}, oh ? h('a', { href: oh }, nsName) : nsName),
        h('td', { class: 'code-4 num' }, e.responseStatus && e.responseStatus.code));
    }))) : h('p', { class: 'muted' }, 'none'));
  const rbacCard = h('div', { class: 'card' }, h('h3', {}, 'Least-privilege RBAC (from allowed requests)'),
    rbac.error ? h('p', { class: 'error' }, rbac.error)
      : [h('p', { class: 'muted' }, `${fmtNum(rbac.requests)} allowed requests replayed, ${fmtNum(rbac.denied)} denied left out`),
        h('pre', { class: 'yaml', id: 'rbac' }, rbac.yaml || '# nothing allowed was observed')]);
  mount(main, head,
    h('div', { class: 'grid' },
      topTable('touched-resources', 'Resources touched', resources),
      topTable('touched-namespaces', 'Namespaces (sessions)', namespaces, (n) => href('search', { q: `${q} ns=${JSON.stringify(n)}` })),
      topTable('verbs', 'Verbs', verbs)),
    h('div', { class: 'grid' }, deniedTable, rbacCard),
    sessTable);
}
