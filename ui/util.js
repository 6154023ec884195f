// Small DOM and formatting helpers shared by every page (no framework).

/** Creates an element: h('a', {href: '#/x', class: 'y'}, 'text', child...). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the children of `el`. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** `2026-01-05T09:00:00.123456Z` → `2026-01-05 09:00:00.123`. */
export function fmtTime(t) {
  if (!t) return '';
  const s = String(t);
  const m = s.match(/^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d{1,3})?/);
  return m ? `${m[1]} ${m[2]}${m[3] || ''}` : s;
}

/** Microseconds since the epoch → the same display form. */
export function fmtMicros(us) {
  return fmtTime(new Date(Math.floor(us / 1000)).toISOString());
}

// One formatter for every number: toLocaleString with options builds a new
// one per call, which shows when a chart formats hundreds of values.
const NUM = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });

export function fmtNum(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  return NUM.format(Number(n));
}

export function fmtDuration(secs) {
  if (secs === null || secs === undefined) return '–';
  if (secs < 1) return `${Math.round(secs * 1000)} ms`;
  if (secs < 120) return `${secs.toFixed(1)} s`;
  if (secs < 7200) return `${Math.round(secs / 60)} min`;
  if (secs < 172800) return `${(secs / 3600).toFixed(1)} h`;
  return `${(secs / 86400).toFixed(1)} d`;
}

/** Microsecond latency → `12.3 ms`. */
export function fmtLatency(us) {
  if (us === null || us === undefined) return '–';
  if (us < 1000) return `${us} µs`;
  if (us < 1e6) return `${(us / 1000).toFixed(1)} ms`;
  return `${(us / 1e6).toFixed(2)} s`;
}

/** The current route: {page, rest, params} from `#/page/rest?params`. */
export function route() {
  const hash = location.hash.replace(/^#\/?/, '');
  const qi = hash.indexOf('?');
  const path = qi < 0 ? hash : hash.slice(0, qi);
  const params = new URLSearchParams(qi < 0 ? '' : hash.slice(qi + 1));
  const slash = path.indexOf('/');
  const page = decodeURIComponent(slash < 0 ? path : path.slice(0, slash)) || 'search';
  const rest = slash < 0 ? '' : path.slice(slash + 1);
  return { page, rest, params };
}

/** A link target for a page with query parameters (empty values left out). */
export function href(page, params = {}, rest = '') {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') p.set(k, v);
  const qs = p.toString();
  return `#/${page}${rest ? '/' + rest : ''}${qs ? '?' + qs : ''}`;
}

export const userHref = (u) => `#/user/${encodeURIComponent(u)}`;

/** Object history link for an objectRef, or null when it names no object. */
export function objectHref(o) {
  if (!o || !o.resource || !o.name) return null;
  const parts = [o.resource, o.namespace, o.name].filter(Boolean).map(encodeURIComponent);
  return `#/object/${parts.join('/')}`;
}

export function objectLabel(o) {
  if (!o) return '';
  const res = o.subresource ? `${o.resource}/${o.subresource}` : o.resource || '';
  return { res, nsName: [o.namespace, o.name].filter(Boolean).join('/') };
}

export function codeClass(code) {
  return code ? `code-${String(code)[0]}` : '';
}

/** Starts a file download of text (or a Blob) received through the API (no token in any URL). */
export function download(name, text, type = 'text/plain') {
  const url = URL.createObjectURL(text instanceof Blob ? text : new Blob([text], { type }));
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** Time-range presets shared by the pages that have a range. */
export const RANGES = [
  ['', 'All time'], ['15m', 'Last 15 min'], ['1h', 'Last hour'], ['6h', 'Last 6 hours'],
  ['24h', 'Last 24 hours'], ['7d', 'Last 7 days'], ['30d', 'Last 30 days'], ['custom', 'Custom…'],
];

/** A bucket width (as the API's `every`) giving about `n` buckets over `spanUs`. */
export function bucketFor(spanUs, n = 60) {
  const steps = [[1, 's'], [5, 's'], [10, 's'], [30, 's'], [1, 'm'], [5, 'm'], [10, 'm'], [30, 'm'],
    [1, 'h'], [3, 'h'], [6, 'h'], [12, 'h'], [1, 'd'], [7, 'd']];
  const unit = { s: 1e6, m: 6e7, h: 3.6e9, d: 8.64e10 };
  for (const [k, u] of steps) if (k * unit[u] * n >= spanUs) return { every: `${k}${u}`, us: k * unit[u] };
  return { every: '7d', us: 7 * 8.64e10 };
}

/** Parses an RFC 3339 time (as the API prints) into microseconds. */
export function parseMicros(t) {
  const m = String(t).match(/\.(\d+)Z$/);
  const ms = Date.parse(t);
  if (Number.isNaN(ms)) return null;
  const frac = m ? Number((m[1] + '000000').slice(3, 6)) : 0;
  return ms * 1000 + frac;
}

/** Microseconds → RFC 3339 with microseconds (what `since`/`until` accept). */
export function isoMicros(us) {
  const ms = Math.floor(us / 1000);
  const base = new Date(ms).toISOString().slice(0, 19);
  const frac = String(Math.floor(us - Math.floor(us / 1e6) * 1e6)).padStart(6, '0');
  return `${base}.${frac}Z`;
}
