// Alerts: per rule its priority, count, first and last seen, and links to the
// events; filters by rule, priority and time, all kept in the URL.

import { api } from '../api.js';
import { h, mount, href, fmtTime, fmtNum, userHref, RANGES } from '../util.js';

const PRIORITIES = ['', 'Emergency', 'Alert', 'Critical', 'Error', 'Warning', 'Notice', 'Informational', 'Debug'];

export async function render(main, r) {
  const p = r.params;
  const rule = p.get('rule') || '', priority = p.get('priority') || '', since = p.get('since') || '';
  const open = p.get('open') || '';
  mount(main, h('p', { class: 'loading' }, 'Loading alerts…'));
  const [filtered, all] = await Promise.all([
    api('/api/v1/alerts', { params: { rule, priority, since, limit: 10000 } }),
    rule ? api('/api/v1/alerts', { params: { limit: 10000 } }) : null,
  ]);
  const alerts = filtered.alerts;
  const ruleNames = [...new Set((all || filtered).alerts.map((a) => a.rule))].sort();
  const groups = new Map();
  for (const a of alerts) {
    let g = groups.get(a.rule);
    if (!g) groups.set(a.rule, (g = { rule: a.rule, priority: a.priority, items: [], first: a.time, last: a.time }));
    g.items.push(a);
    if (a.time < g.first) g.first = a.time;
    if (a.time > g.last) g.last = a.time;
  }
  const set = (k, v) => { location.hash = href('alerts', { rule, priority, since, [k]: v }); };
  const filters = h('form', { class: 'qbar', id: 'alert-filters' },
    h('select', { id: 'f-rule', onchange: (e) => set('rule', e.target.value) },
      h('option', { value: '' }, 'All rules'), ruleNames.map((n) => h('option', { value: n, selected: n === rule }, n))),
    h('select', { id: 'f-priority', onchange: (e) => set('priority', e.target.value) },
      PRIORITIES.map((n) => h('option', { value: n, selected: n === priority }, n || 'Any priority'))),
    h('select', { id: 'f-since', onchange: (e) => set('since', e.target.value) },
      RANGES.filter(([v]) => v !== 'custom').map(([v, l]) => h('option', { value: v, selected: v === since }, l))),
    h('span', { class: 'muted' }, `${fmtNum(alerts.length)} alerts${alerts.length >= 10000 ? ' (newest 10,000)' : ''}`));
  const rows = [];
  for (const g of [...groups.values()].sort((a, b) => (a.last < b.last ? 1 : -1))) {
    const isOpen = open === g.rule;
    rows.push(h('tr', { class: 'clickable alert-rule', dataset: { rule: g.rule },
      onclick: () => { location.hash = href('alerts', { rule, priority, since, open: isOpen ? '' : g.rule }); } },
    h('td', {}, isOpen ? '▾ ' : '▸ ', g.rule),
    h('td', {}, h('span', { class: `pill ${g.priority}` }, g.priority)),
    h('td', { class: 'num' }, fmtNum(g.items.length)),
    h('td', { class: 'mono' }, fmtTime(g.first)),
    h('td', { class: 'mono' }, fmtTime(g.last))));
    if (isOpen) {
      rows.push(h('tr', {}, h('td', { colspan: 5 }, h('table', { class: 'alert-items' }, h('tbody', {}, g.items.slice(0, 200).map((a) => {
        const user = a.output_fields && a.output_fields['ka.user.name'];
        return h('tr', {},
          h('td', { class: 'mono' }, h('a', { href: `#/event/${encodeURIComponent(a.audit_id)}` }, fmtTime(a.time))),
          h('td', {}, a.cluster),
          h('td', {}, user ? h('a', { href: userHref(user) }, user) : ''),
          h('td', { class: 'wrap' }, a.output));
      }))))));
    }
  }
  mount(main,
    h('h1', {}, 'Alerts'),
    filters,
    h('div', { class: 'card' }, groups.size
      ? h('table', { id: 'alerts' },
        h('thead', {}, h('tr', {}, ['Rule', 'Priority', 'Count', 'First seen', 'Last seen'].map((c) => h('th', { class: c === 'Count' ? 'num' : '' }, c)))),
        h('tbody', {}, rows))
      : h('p', { class: 'muted', id: 'no-alerts' }, 'No alerts match. Detection runs on every stored event when enabled (detect.enabled).')));
}
