// Event detail: every stage of one auditID as collapsible JSON, links to the
// user's activity and the object's history, and each stage's inclusion proof
// checked here in the browser against the signed checkpoint's root.

import { api } from '../api.js';
import { verifyInclusion, parseNote, leafHoldsEvent, verifyNoteSignature } from '../sha256.js';
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

/**
 * The verdict on one stage's proof: the leaf holds the event shown, the audit
 * path leads to the root, the root is the signed checkpoint's, and the
 * checkpoint's Ed25519 signature is good under the store's verifier key.
 */
async function proofVerdict(stage, keyText) {
  const p = stage.proof;
  const leaf = leafHoldsEvent(p, stage);
  if (!leaf.ok) return { ok: false, why: leaf.reason };
  const res = verifyInclusion(p);
  if (!res.ok) return { ok: false, why: res.reason };
  if (!p.checkpoint) return { ok: true, text: '✔ verified (tree head not yet signed)' };
  const note = parseNote(p.checkpoint);
  if (note.root !== p.root || note.size !== p.tree_size) return { ok: false, why: 'the root is not the one the signed checkpoint names' };
  if (!keyText) return { unchecked: 'the verifier key could not be fetched' };
  const sig = await verifyNoteSignature(p.checkpoint, keyText);
  if (sig.unchecked) return { unchecked: sig.unchecked };
  if (!sig.ok) return { ok: false, why: sig.reason };
  return { ok: true, text: '✔ verified' };
}

function proofBlock(stage, keyText) {
  const p = stage.proof;
  const verdict = h('span', { class: 'muted proof-verdict pending' }, 'checking…');
  proofVerdict(stage, keyText).then((v) => {
    verdict.classList.remove('muted', 'pending');
    if (v.unchecked) {
      verdict.classList.add('bad');
      verdict.textContent = `? signature not checked: ${v.unchecked}`;
    } else if (v.ok) {
      verdict.classList.add('ok');
      verdict.textContent = v.text;
    } else {
      verdict.classList.add('bad');
      verdict.textContent = `✘ not verified: ${v.why}`;
    }
  });
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
  const [d, keyText] = await Promise.all([
    api(`/api/v1/events/${encodeURIComponent(id)}`),
    api('/api/v1/checkpoint/public-key', { raw: true }).catch(() => null),
  ]);
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
    proofBlock(s, keyText),
    h('div', { class: 'json' }, jsonTree(s.event))));
  mount(main, head, h('h3', {}, `${d.stages.length} stage${d.stages.length === 1 ? '' : 's'}`), stages);
}
