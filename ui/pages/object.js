// Object history: every event on one object on a timeline, with who and
// when, and the diff between successive versions of the object.

import { api } from '../api.js';
import { timeline } from '../charts.js';
import { h, mount, fmtTime, userHref, codeClass, parseMicros } from '../util.js';

function val(v) {
  const s = JSON.stringify(v);
  return s.length > 300 ? `${s.slice(0, 300)}…` : s;
}

export function diffList(changes) {
  return h('ul', { class: 'diff' }, changes.map((c) => {
    if (c.op === 'changed') return h('li', { class: 'changed' }, `~ ${c.path}: ${val(c.from)} → ${val(c.to)}`);
    if (c.op === 'added') return h('li', { class: 'added' }, `+ ${c.path}: ${val(c.value)}`);
    return h('li', { class: 'removed' }, `− ${c.path}: ${val(c.value)}`);
  }));
}

export async function render(main, r) {
  const object = r.rest.split('/').map(decodeURIComponent).join('/');
  mount(main, h('p', { class: 'loading' }, 'Loading history…'));
  const d = await api(`/api/v1/history/${object.split('/').map(encodeURIComponent).join('/')}`);
  const entries = d.entries;
  const title = [d.object.resource, d.object.namespace, d.object.name].filter(Boolean).join(' / ');
  if (!entries.length) {
    mount(main, h('div', { class: 'card' }, h('h1', {}, title), h('p', { class: 'muted' }, 'No events on this object.')));
    return;
  }
  const times = entries.map((e) => parseMicros(e.time));
  const x0 = Math.min(...times), x1 = Math.max(...times) + 1;
  const rows = entries.map((e, i) => h('tr', { id: `entry-${i}`, class: 'clickable', dataset: { auditId: e.auditID } },
    h('td', { class: 'mono' }, fmtTime(e.time)),
    h('td', {}, e.cluster),
    h('td', {}, e.verb + (e.subresource ? `/${e.subresource}` : '')),
    h('td', {}, h('a', { href: userHref(e.user) }, e.user)),
    h('td', { class: `num ${codeClass(e.code)}` }, e.code || ''),
    h('td', {}, h('a', { href: `#/event/${encodeURIComponent(e.auditID)}` }, e.stage)),
    h('td', { class: 'wrap' }, e.changes && e.changes.length ? diffList(e.changes)
      : e.body ? h('span', { class: 'muted' }, 'first version seen') : '')));
  const writes = entries.filter((e) => e.changes && e.changes.length).length;
  mount(main,
    h('div', { class: 'card' },
      h('h1', {}, `History of ${title}`),
      h('p', { class: 'muted' }, `${entries.length} events · ${writes} with changes · ${fmtTime(entries[0].time)} – ${fmtTime(entries[entries.length - 1].time)}`),
      timeline(entries.map((e, i) => ({
        t: times[i],
        cls: e.code >= 400 ? 'd' : ['get', 'list', 'watch'].includes(e.verb) ? '' : 'w',
        title: `${fmtTime(e.time)} ${e.verb} by ${e.user}`,
      })), { x0, x1, onClick: (_p, i) => document.getElementById(`entry-${i}`).scrollIntoView({ block: 'center' }) })),
    h('div', { class: 'card' }, h('table', { id: 'history' },
      h('thead', {}, h('tr', {}, ['Time', 'Cluster', 'Verb', 'User', 'Code', 'Stage', 'Changes from the previous version'].map((c) => h('th', {}, c)))),
      h('tbody', {}, rows))));
}
