// Integrity: the latest signed checkpoint, tree size, the last verification
// (result and time), downloads of the checkpoint and the public key, and a
// button (role admin) to verify the whole store now.

import { api } from '../api.js';
import { h, mount, fmtTime, fmtNum, fmtDuration, download } from '../util.js';

function verifyCard(v) {
  const last = v.last;
  if (!last) return h('div', { class: 'card', id: 'verify-result' }, h('h3', {}, 'Last verification'), h('p', { class: 'muted' }, v.running ? 'Running now…' : 'The store has not been verified from here yet.'));
  return h('div', { class: `card ${last.ok ? 'status-ok' : 'status-bad'}`, id: 'verify-result' },
    h('h3', {}, 'Last verification'),
    h('p', {}, last.ok ? h('span', { class: 'ok', id: 'verify-verdict' }, 'OK') : h('span', { class: 'bad', id: 'verify-verdict' }, `FAILED: ${last.problem_count} problems`),
      ` — ${fmtNum(last.records)} records re-hashed, tree size ${fmtNum(last.tree_size)}, ${last.checkpoints_checked} signed checkpoints checked, in ${fmtDuration(last.seconds)}`),
    h('dl', { class: 'kv' },
      h('dt', {}, 'Finished'), h('dd', { id: 'verify-time' }, fmtTime(last.finished)),
      h('dt', {}, 'Root'), h('dd', {}, last.root || '–'),
      h('dt', {}, 'Run by'), h('dd', {}, last.by),
      h('dt', {}, 'Checked with'), h('dd', { id: 'verify-key' },
        last.key_source === 'trusted' ? `the trusted key ${last.key || ''} (store.trusted_key)` : `the store's own key ${last.key || ''}`),
      h('dt', {}, 'Trusted checkpoint'), h('dd', { id: 'verify-trusted-checkpoint' },
        last.trusted_checkpoint || 'none (store.trusted_checkpoint_dir not set or empty)')),
    last.caveat ? h('p', { class: 'warn', id: 'verify-caveat' }, `⚠ ${last.caveat}`) : null,
    last.problems.length ? h('ul', { class: 'diff' }, last.problems.map((p) => h('li', { class: 'removed' }, p))) : null,
    last.notes.length ? h('ul', { class: 'muted' }, last.notes.map((n) => h('li', {}, n))) : null);
}

export async function render(main, r, ctx) {
  mount(main, h('p', { class: 'loading' }, 'Loading…'));
  const [cp, v] = await Promise.all([
    api('/api/v1/checkpoint').catch((e) => ({ error: e.message })),
    api('/api/v1/verify'),
  ]);
  await ctx.ready;
  const admin = ctx.session.role === 'admin';
  const resultSlot = h('div', {}, verifyCard(v));
  const status = h('span', { class: 'muted', id: 'verify-status' });
  const button = h('button', {
    id: 'run-verify', class: 'primary', type: 'button', disabled: !admin || v.running,
    title: admin ? 'Re-read every segment, re-hash every record and check every signed checkpoint' : 'Needs role admin',
  }, 'Run verification now');
  button.addEventListener('click', async () => {
    button.disabled = true;
    status.textContent = 'Verifying the whole store…';
    try {
      const res = await api('/api/v1/verify', { method: 'POST' });
      if (!ctx.current()) return;
      mount(resultSlot, verifyCard(res));
      status.textContent = '';
    } catch (e) {
      status.textContent = e.message;
      status.className = 'error';
    } finally {
      button.disabled = false;
    }
  });
  const cpCard = cp.error ? h('div', { class: 'card' }, h('p', { class: 'error' }, cp.error))
    : h('div', { class: 'card', id: 'checkpoint' },
      h('h3', {}, 'Latest signed checkpoint'),
      h('div', { class: 'kpis' },
        h('div', { class: 'kpi' }, h('div', { class: 'v', id: 'tree-size' }, fmtNum(cp.size)), h('div', { class: 'l' }, 'tree size (records)')),
        h('div', { class: 'kpi' }, h('div', { class: 'v' }, fmtTime(cp.time).slice(0, 19)), h('div', { class: 'l' }, 'signed at (UTC)')),
        h('div', { class: 'kpi' }, h('div', { class: 'v mono' }, cp.key_id), h('div', { class: 'l' }, `key ${cp.key_name}`))),
      h('dl', { class: 'kv' }, h('dt', {}, 'Root'), h('dd', { id: 'root' }, cp.root), h('dt', {}, 'Origin'), h('dd', {}, cp.origin)),
      h('h3', {}, 'Signed note'),
      h('pre', { class: 'note' }, cp.note),
      h('div', { class: 'row' },
        h('button', { type: 'button', id: 'dl-checkpoint', onclick: () => download(`checkpoint-${cp.size}.txt`, cp.note) }, 'Download checkpoint'),
        h('button', { type: 'button', id: 'dl-key', onclick: async () => download('checkpoint.pub', await api('/api/v1/checkpoint/public-key', { raw: true })) }, 'Download public key'),
        h('span', { class: 'muted' }, 'Check a copy of the store elsewhere: kaudit verify --data DIR --key checkpoint.pub --checkpoint checkpoint.txt')));
  mount(main,
    h('h1', {}, 'Integrity'),
    cpCard,
    h('div', { class: 'card' }, h('div', { class: 'row' }, button, status,
      admin ? null : h('span', { class: 'muted' }, 'Verification needs role admin.'))),
    resultSlot);
}
