// Event detail: every stage of one auditID as collapsible JSON, links to the
// user's activity and the object's history, and each stage's inclusion proof
// checked here in the browser against the signed checkpoint's root.

import { api } from '../api.js';
import { verifyInclusion, parseNote } from '../sha256.js';
import { h, mount, fmtTime, userHref, objectHref, objectLabel, codeClass, href } from '../util.js';

const OPEN_DEPTH = 1;
const BIG = new Set(['requestObject', 'responseObject', 'managedFields']);

/** A JSON value as a tree; objects and arrays fold (request/response bodies start folded). */
export function jsonTree(v, key, depth = 0) {
  const label = key !== undefined ? [h('span', { class: 'k' }, JSON.stringify(key)), ': '] : [];
  if (v === null) return h('div', { class: 'line' }, label, h('span', { class: 'z' }, 'null'));
  if (typeof v !== 'object') {
    const cls = typeof v === 'string' ? 's' : typeof v === 'number' ? 'n' : 'b';
    return h('div', { class: 'line' }, label, h('span', { class: cls }, JSON.stringify(v)));
  }
  const arr = Array.isArray(v);
  const entries = arr ? v.map((x, i) => [i, x]) : Object.entries(v);
  if (!entries.length) return h('div', { class: 'line' }, label, arr ? '[]' : '{}');
  const open = depth < OPEN_DEPTH && !BIG.has(key);
  const summary = h('summary', {}, label, arr ? `[ ${entries.length} items ]` : `{ ${entries.length} keys }`);
  return h('details', { open }, summary, entries.map(([k, x]) => jsonTree(x, arr ? undefined : k, depth + 1)));
}

function proofBlock(stage) {
  const p = stage.proof;
  const res = verifyInclusion(p);
  const note = p.checkpoint ? parseNote(p.checkpoint) : null;
  let ok = res.ok;
  let why = res.reason;
  if (ok && note && (note.root !== p.root || note.size !== p.tree_size)) {
    ok = false;
    why = 'the root is not the one the signed checkpoint names';
  }
  const verdict = ok
    ? h('span', { class: 'ok proof-verdict' }, note ? '✔ verified' : '✔ verified (tree head not yet signed)')
    : h('span', { class: 'bad proof-verdict' }, `✘ not verified: ${why}`);
  return h('details', { class: 'proof' },
    h('summary', {}, 'Inclusion proof: ', verdict, h('span', { class: 'muted' }, ` leaf ${p.leaf_index} of ${p.tree_size}`)),
    h('dl', { class: 'kv' },
      h('dt', {}, 'Leaf hash'), h('dd', {}, p.leaf_hash),
      h('dt', {}, 'Root'), h('dd', {}, p.root),
      h('dt', {}, 'Audit path'), h('dd', {}, p.hashes.length ? p.hashes.map((x) => h('div', {}, x)) : '(none)'),
      h('dt', {}, 'Checkpoint'), h('dd', {}, p.checkpoint ? h('pre', { class: 'note' }, p.checkpoint) : 'none covers this leaf yet')));
}

export async function render(main, r) {
  const id = decodeURIComponent(r.rest);
  mount(main, h('p', { class: 'loading' }, 'Loading event…'));
  const d = await api(`/api/v1/events/${encodeURIComponent(id)}`);
  const first = d.stages[d.stages.length - 1].event;
  const o = first.objectRef || {};
  const { res, nsName } = objectLabel(o);
  const user = first.user && first.user.username;
  const oh = objectHref(o);
  const code = d.stages.map((s) => s.event.responseStatus && s.event.responseStatus.code).find(Boolean);
  const head = h('div', { class: 'card' },
    h('h1', {}, `${first.verb} ${res || first.requestURI}${nsName ? ' ' + nsName : ''}`),
    h('dl', { class: 'kv' },
      h('dt', {}, 'auditID'), h('dd', { id: 'audit-id' }, d.auditID),
      h('dt', {}, 'User'), h('dd', {}, user ? h('a', { id: 'user-link', href: userHref(user) }, user) : '–'),
      h('dt', {}, 'Object'), h('dd', {}, oh ? h('a', { id: 'object-link', href: oh }, `${res} ${nsName}`) : '–'),
      h('dt', {}, 'Code'), h('dd', { class: codeClass(code) }, code || '–'),
      h('dt', {}, 'Source IPs'), h('dd', {}, (first.sourceIPs || []).join(', ')),
      h('dt', {}, 'User agent'), h('dd', {}, first.userAgent || ''),
      h('dt', {}, 'Request URI'), h('dd', {}, first.requestURI || ''),
      h('dt', {}, 'More'), h('dd', {}, h('a', { href: href('search', { q: `user=${JSON.stringify(user || '')}` }) }, 'all requests of this user'))));
  const stages = [...d.stages].reverse().map((s) => h('div', { class: 'card stage', dataset: { stage: s.event.stage } },
    h('div', { class: 'row' },
      h('h2', {}, s.event.stage),
      h('span', { class: 'muted' }, `${fmtTime(s.time)} · cluster ${s.cluster} · seq ${s.seq}`)),
    proofBlock(s),
    h('div', { class: 'json' }, jsonTree(s.event))));
  mount(main, head, h('h3', {}, `${d.stages.length} stage${d.stages.length === 1 ? '' : 's'}`), stages);
}
