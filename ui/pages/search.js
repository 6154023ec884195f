// Search: the query language with field and value autocomplete, time-range
// presets and a custom range, a histogram of matches (drag to zoom), the
// results with cursor paging, and a live tail. Every bit of state is in the
// URL hash: q, range | since+until, c (cursor), live.

import { api } from '../api.js';
import { histogram } from '../charts.js';
import {
  h, mount, href, fmtTime, fmtNum, userHref, objectHref, objectLabel, codeClass, RANGES,
  bucketFor, isoMicros,
} from '../util.js';

const PAGE = 100;
const UNITS = { s: 1e6, m: 6e7, h: 3.6e9, d: 8.64e10, w: 6.048e11 };
let fieldNames = null;

/** The API's since/until for the URL state. */
export function bounds(params) {
  const range = params.get('range') || '';
  if (range && range !== 'custom') return { since: range, until: '' };
  return { since: params.get('since') || '', until: params.get('until') || '' };
}

function stateHref(params, changes) {
  const o = Object.fromEntries(params.entries());
  return href('search', { ...o, ...changes });
}

/**
 * A histogram of about `n` buckets of the matches of `q` in the range `b`,
 * with `extra` stats parameters (e.g. `by`): {st, x0, x1, every, us}, or
 * null when nothing matches. A preset range is bucketed here; an open range
 * is bucketed by the server over the matches' own span (one request either way).
 */
export async function histogramStats(q, b, n, extra = {}) {
  const dur = String(b.since).match(/^(\d+)([smhdw])$/);
  if (dur) {
    const now = Date.now() * 1000;
    const { every, us } = bucketFor(Number(dur[1]) * UNITS[dur[2]], n);
    const x0 = Math.floor((now - Number(dur[1]) * UNITS[dur[2]]) / us) * us;
    const x1 = Math.ceil(now / us) * us;
    const st = await api('/api/v1/stats', { params: { q, since: isoMicros(x0), until: isoMicros(x1), every, ...extra } });
    return st.total ? { st, x0, x1, every, us } : null;
  }
  const st = await api('/api/v1/stats', { params: { q, ...b, buckets: n, ...extra } });
  const hg = st.histogram;
  if (!hg || !st.total) return null;
  return { st, x0: hg.since_us, x1: hg.until_us, every: hg.every, us: hg.every_us };
}

async function drawHistogram(el, q, b, params) {
  const hs = await histogramStats(q, b, 80);
  if (!hs) return mount(el, h('p', { class: 'muted' }, 'No matching events in this range.'));
  const { st, x0, x1, every, us } = hs;
  const buckets = st.rows.filter((r) => r.bucket !== undefined).map((r) => ({ t: r.bucket, n: r.count }));
  mount(el,
    h('div', { class: 'row' },
      h('strong', { id: 'match-total' }, `${fmtNum(st.total)} matching events`),
      h('span', { class: 'muted' }, ` · ${every} buckets · drag on the chart to zoom`)),
    histogram(buckets, {
      x0, x1, width: us,
      onZoom: (a, z) => { location.hash = stateHref(params, { range: 'custom', since: isoMicros(a), until: isoMicros(z), c: '' }); },
    }));
}

function eventRow(item, fresh) {
  const e = item.event;
  const o = e.objectRef || {};
  const { res, nsName } = objectLabel(o);
  const code = e.responseStatus && e.responseStatus.code;
  const user = e.user && e.user.username;
  const oh = objectHref(o);
  const tr = h('tr', { class: `clickable${fresh ? ' new' : ''}`, dataset: { auditId: e.auditID } },
    h('td', { class: 'mono' }, fmtTime(item.time)),
    h('td', {}, item.cluster),
    h('td', {}, user ? h('a', { href: userHref(user) }, user) : ''),
    h('td', {}, e.verb),
    h('td', {}, res || h('span', { class: 'muted mono' }, e.requestURI || '')),
    h('td', {}, oh ? h('a', { href: oh }, nsName) : nsName),
    h('td', { class: `num ${codeClass(code)}` }, code || ''),
    h('td', { class: 'mono' }, (e.sourceIPs || [])[0] || ''),
    h('td', { class: 'muted' }, e.stage));
  tr.addEventListener('click', (ev) => {
    if (ev.target.closest('a')) return;
    location.hash = `#/event/${encodeURIComponent(e.auditID)}`;
  });
  return tr;
}

function resultsTable(page, seen) {
  const tbody = h('tbody', {}, page.events.map((it) => eventRow(it, seen && !seen.has(it.seq))));
  return h('table', { id: 'results' },
    h('thead', {}, h('tr', {},
      ['Time', 'Cluster', 'User', 'Verb', 'Resource', 'Namespace/Name', 'Code', 'Source IP', 'Stage']
        .map((c) => h('th', { class: c === 'Code' ? 'num' : '' }, c)))),
    tbody);
}

/** Autocomplete of field names and of values of the field being typed. */
function autocomplete(input, box) {
  let items = [];
  let sel = -1;
  let seq = 0;
  const token = () => {
    const pos = input.selectionStart ?? input.value.length;
    const before = input.value.slice(0, pos);
    const m = before.match(/[^\s()]*$/);
    return { start: pos - m[0].length, end: pos, text: m[0] };
  };
  const close = () => { box.hidden = true; items = []; sel = -1; };
  const show = (list) => {
    items = list;
    sel = list.length ? 0 : -1;
    mount(box, list.map((it, i) => h('div', {
      class: i === sel ? 'sel' : '',
      onmousedown: (ev) => { ev.preventDefault(); pick(i); },
    }, h('span', {}, it.label), h('span', { class: 'c' }, it.note || ''))));
    box.hidden = !list.length;
  };
  const pick = (i) => {
    const it = items[i];
    if (!it) return;
    const t = token();
    input.value = input.value.slice(0, t.start) + it.insert + input.value.slice(t.end);
    const caret = t.start + it.insert.length;
    input.setSelectionRange(caret, caret);
    close();
    if (it.insert.endsWith('=')) update();
  };
  const update = async () => {
    const my = ++seq;
    const t = token();
    const fv = t.text.match(/^([A-Za-z][\w.]*)(!=|=)(.*)$/);
    if (fv) {
      const prefix = fv[3].replace(/^["']/, '');
      let vals = [];
      try {
        vals = (await api(`/api/v1/fields/${encodeURIComponent(fv[1])}/values`, { params: { prefix, limit: 12 } })).values;
      } catch { vals = []; }
      if (my !== seq) return;
      show(vals.map((v) => {
        const quoted = /^[\w.:@/*-]+$/.test(v.value) ? v.value : JSON.stringify(v.value);
        return { label: v.value || '""', note: fmtNum(v.count), insert: `${fv[1]}${fv[2]}${quoted} ` };
      }));
    } else if (/^[A-Za-z]\w*$/.test(t.text)) {
      if (!fieldNames) {
        try { fieldNames = (await api('/api/v1/fields')).fields.map((f) => f.name); } catch { fieldNames = []; }
      }
      if (my !== seq) return;
      const lower = t.text.toLowerCase();
      show(fieldNames.filter((n) => n.startsWith(lower) && n !== lower).slice(0, 12)
        .map((n) => ({ label: `${n}=`, note: 'field', insert: `${n}=` })));
    } else close();
  };
  input.addEventListener('input', update);
  input.addEventListener('blur', close);
  input.addEventListener('keydown', (ev) => {
    if (box.hidden) return;
    if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
      ev.preventDefault();
      sel = (sel + (ev.key === 'ArrowDown' ? 1 : items.length - 1)) % items.length;
      [...box.children].forEach((c, i) => c.classList.toggle('sel', i === sel));
    } else if ((ev.key === 'Tab' || ev.key === 'Enter') && sel >= 0) {
      ev.preventDefault();
      pick(sel);
    } else if (ev.key === 'Escape') close();
  });
}

export async function render(main, r, ctx) {
  const p = r.params;
  const q = p.get('q') || '';
  const range = p.has('range') ? p.get('range') : (p.get('since') || p.get('until') ? 'custom' : '');
  const b = bounds(p);
  const cursor = p.get('c') || '';
  const live = p.get('live') === '1';

  const qInput = h('input', { id: 'q', type: 'text', value: q, placeholder: 'verb=delete resource=secrets ns=prod  ·  code>=400  ·  user=system:anonymous', spellcheck: 'false', autocomplete: 'off' });
  const suggest = h('div', { class: 'suggest', id: 'suggest', hidden: true });
  const rangeSel = h('select', { id: 'range' }, RANGES.map(([v, l]) => h('option', { value: v, selected: v === range }, l)));
  const sinceIn = h('input', { id: 'since', type: 'text', value: p.get('since') || '', placeholder: 'since (2026-01-05T09:00:00Z)' });
  const untilIn = h('input', { id: 'until', type: 'text', value: p.get('until') || '', placeholder: 'until' });
  const custom = h('span', { class: 'custom row', hidden: range !== 'custom' }, sinceIn, untilIn);
  const liveBox = h('input', { id: 'live', type: 'checkbox', checked: live });
  const submit = () => {
    const rv = rangeSel.value;
    location.hash = href('search', {
      q: qInput.value.trim(), range: rv,
      since: rv === 'custom' ? sinceIn.value.trim() : '', until: rv === 'custom' ? untilIn.value.trim() : '',
      live: liveBox.checked ? '1' : '',
    });
  };
  rangeSel.addEventListener('change', () => { custom.hidden = rangeSel.value !== 'custom'; if (rangeSel.value !== 'custom') submit(); });
  liveBox.addEventListener('change', submit);
  const form = h('form', { class: 'qbar', id: 'search-form', onsubmit: (ev) => { ev.preventDefault(); submit(); } },
    h('div', { class: 'qwrap' }, qInput, suggest), rangeSel, custom,
    h('button', { type: 'submit', class: 'primary' }, 'Search'),
    h('label', { class: 'row', title: 'Refresh the newest matches every 2 seconds' }, liveBox, 'Live tail'));
  const histEl = h('div', { class: 'card', id: 'histogram' }, h('p', { class: 'loading' }, 'Counting…'));
  const tableEl = h('div', { class: 'card', id: 'table' }, h('p', { class: 'loading' }, 'Searching…'));
  mount(main, form, histEl, tableEl);
  autocomplete(qInput, suggest);

  const params = { q, ...b, limit: PAGE, cursor };
  const showPage = (page, seen) => {
    const pager = h('div', { class: 'pager' },
      cursor ? h('a', { href: stateHref(p, { c: '' }) }, '« Newest') : null,
      cursor ? h('a', { href: '#', onclick: (ev) => { ev.preventDefault(); history.back(); } }, '‹ Newer') : null,
      h('span', { class: 'muted' }, `${page.count} events on this page`),
      page.next_cursor ? h('a', { id: 'next-page', href: stateHref(p, { c: page.next_cursor }) }, 'Older ›') : null);
    mount(tableEl, page.events.length ? resultsTable(page, seen) : h('p', { class: 'muted', id: 'no-results' }, 'No events match.'), pager);
  };
  const histDone = drawHistogram(histEl, q, b, p).catch((e) => {
    mount(histEl, h('p', { class: 'error' }, e.message));
  });
  try {
    const page = await api('/api/v1/events', { params });
    if (!ctx.current()) return;
    showPage(page, null);
    if (live && !cursor) {
      let seen = new Set(page.events.map((e) => e.seq));
      const timer = setInterval(async () => {
        try {
          const next = await api('/api/v1/events', { params });
          if (!ctx.current()) return;
          showPage(next, seen);
          seen = new Set(next.events.map((e) => e.seq));
        } catch { /* shown on the next full render */ }
      }, 2000);
      ctx.onCleanup(() => clearInterval(timer));
    }
  } catch (e) {
    const hint = e.body && e.body.column ? ` (column ${e.body.column}${e.body.hint ? ': ' + e.body.hint : ''})` : '';
    mount(tableEl, h('p', { class: 'error', id: 'query-error' }, e.message + hint));
  }
  await histDone;
}
