// Object history: the events on one object on a timeline, a page at a time
// (newest first, "Older" follows the cursor kept in the URL), with who and
// when, and the diff between successive versions of the object.

import { api } from '../api.js';
import { timeline } from '../charts.js';
import { h, mount, href, fmtTime, userHref, codeClass, parseMicros } from '../util.js';

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

const PAGE = 100;

export async function render(main, r) {
  const path = r.rest.split('/').map(decodeURIComponent);
  const rest = path.map(encodeURIComponent).join('/');
  const cursor = r.params.get('c') || '';
  mount(main, h('p', { class: 'loading' }, 'Loading history…'));
  const d = await api(`/api/v1/history/${rest}`, { params: { limit: PAGE, cursor } });
  const entries = d.entries;
  const title = [d.object.resource, d.object.namespace, d.object.name].filter(Boolean).join(' / ');
  const pager = h('div', { class: 'pager' },
    cursor ? h('a', { href: href('object', {}, rest) }, '« Newest') : null,
    cursor ? h('a', { href: '#', onclick: (ev) => { ev.preventDefault(); history.back(); } }, '‹ Newer') : null,
    h('span', { class: 'muted' }, `${entries.length} events on this page`),
    d.next_cursor ? h('a', { id: 'older-page', href: href('object', { c: d.next_cursor }, rest) }, 'Older ›') : null);
  if (!entries.length) {
    mount(main, h('div', { class: 'card' }, h('h1', {}, title), h('p', { class: 'muted' }, 'No events on this object.'), pager));
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
      : e.body ? h('span', { class: 'muted' }, e.changes ? 'no changes' : 'first version seen') : '')));
  const writes = entries.filter((e) => e.changes && e.changes.length).length;
  const oldest = entries[entries.length - 1], newest = entries[0];
  mount(main,
    h('div', { class: 'card' },
      h('h1', {}, `History of ${title}`),
      h('p', { class: 'muted' }, `${d.next_cursor || cursor ? `${entries.length} events on this page` : `${entries.length} events`} · ${writes} with changes · ${fmtTime(oldest.time)} – ${fmtTime(newest.time)} · newest first`),
      timeline(entries.map((e, i) => ({
        t: times[i],
        cls: e.code >= 400 ? 'd' : ['get', 'list', 'watch'].includes(e.verb) ? '' : 'w',
        title: `${fmtTime(e.time)} ${e.verb} by ${e.user}`,
      })), { x0, x1, onClick: (_p, i) => document.getElementById(`entry-${i}`).scrollIntoView({ block: 'center' }) })),
    h('div', { class: 'card' }, h('table', { id: 'history' },
      h('thead', {}, h('tr', {}, ['Time', 'Cluster', 'Verb', 'User', 'Code', 'Stage', 'Changes from the previous version'].map((c) => h('th', {}, c)))),
      h('tbody', {}, rows)), pager));
}
