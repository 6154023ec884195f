// Reports: pick a compliance template (PCI DSS, SOC 2, CIS) and a period,
// preview the report (its sections' counts and listed rows, the checkpoint
// every row is proven against), and download it as a self-checking HTML
// page, a PDF (when the server has headless Chromium) or the signed
// evidence bundle an auditor checks offline with `kaudit report verify`.
// The choice is kept in the URL, so a preview can be shared as a link.

import { api } from '../api.js';
import { h, mount, href, fmtNum, fmtTime, download } from '../util.js';

/** The previous month, `YYYY-MM` (UTC): what a monthly review asks for. */
function lastMonth() {
  const d = new Date();
  const m = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - 1, 1));
  return m.toISOString().slice(0, 7);
}

function request(form, format) {
  const v = (id) => form.querySelector(id).value.trim();
  const since = v('#r-since');
  const body = { template: v('#r-template'), format };
  if (since) {
    body.since = since;
    if (v('#r-until')) body.until = v('#r-until');
  } else {
    body.period = v('#r-period');
  }
  const clusters = v('#r-cluster').split(',').map((c) => c.trim()).filter(Boolean);
  if (clusters.length) body.cluster = clusters;
  return body;
}

function sectionRows(s) {
  if (!s.rows.length) return null;
  const shown = s.rows.slice(0, 10);
  return h('table', { class: 'report-rows' },
    h('thead', {}, h('tr', {}, ['time', 'user', 'verb', 'resource', 'namespace/name', 'code', 'auditID'].map((c) => h('th', {}, c)))),
    h('tbody', {}, shown.map((r) => h('tr', { dataset: { auditId: r.auditID } },
      h('td', {}, fmtTime(r.time)), h('td', {}, r.user), h('td', {}, r.verb), h('td', {}, r.resource),
      h('td', {}, `${r.namespace}/${r.name}`), h('td', {}, r.code ?? ''),
      h('td', {}, h('a', { href: `#/event/${encodeURIComponent(r.auditID)}` }, r.auditID))))),
    s.rows.length > shown.length ? h('caption', { class: 'muted' }, `first ${shown.length} of ${fmtNum(s.rows.length)} listed rows`) : null);
}

function preview(rep) {
  return h('div', { id: 'report-preview' },
    h('div', { class: 'card' },
      h('h2', {}, rep.title),
      h('p', { class: 'muted' }, rep.description),
      h('dl', { class: 'kv' },
        h('dt', {}, 'Period'), h('dd', { id: 'report-period' }, `${fmtTime(rep.since)} to ${fmtTime(rep.until)} (UTC)`),
        h('dt', {}, 'Clusters'), h('dd', {}, rep.clusters.length ? rep.clusters.join(', ') : 'all'),
        h('dt', {}, 'Rows proven against'), h('dd', { id: 'report-anchor' }, `checkpoint of tree size ${fmtNum(rep.anchor.size)}, signed ${fmtTime(rep.anchor.time)}`),
        h('dt', {}, 'Consistency'), h('dd', {}, rep.first.size === rep.anchor.size ? 'first checkpoint = anchor' : `from tree size ${fmtNum(rep.first.size)}`),
        h('dt', {}, 'Key'), h('dd', { class: 'mono' }, rep.verifier_key)),
      (rep.proof_notes || []).map((n) => h('p', { class: 'warn', id: 'report-proof-note' }, `⚠ ${n}`))),
    h('div', { class: 'card' },
      h('table', { id: 'report-sections' },
        h('thead', {}, h('tr', {}, ['section', 'count', 'listed', 'omitted', 'not yet provable', 'notes'].map((c) => h('th', {}, c)))),
        h('tbody', {}, rep.sections.map((s) => h('tr', { class: 'report-section', dataset: { section: s.id, count: s.count, listed: s.rows.length } },
          h('td', {}, s.title), h('td', {}, fmtNum(s.count)), h('td', {}, fmtNum(s.rows.length)),
          h('td', {}, fmtNum(s.omitted)), h('td', {}, fmtNum(s.unproven)),
          h('td', { class: 'wrap' }, (s.notes || []).join(' ')))))),
      h('p', { class: 'muted' }, 'Counts are signed claims; every listed row carries its event and inclusion proof in the HTML and the bundle.')),
    rep.sections.filter((s) => s.rows.length).map((s) => h('div', { class: 'card', dataset: { rowsOf: s.id } }, h('h3', {}, s.title), sectionRows(s))));
}

export async function render(main, r) {
  const p = r.params;
  mount(main, h('p', { class: 'loading' }, 'Loading templates…'));
  const info = await api('/api/v1/reports/templates');
  const template = p.get('template') || info.templates[0]?.name || '';
  const since = p.get('since') || '';
  const period = p.get('period') || (since ? '' : lastMonth());
  const form = h('form', { class: 'card', id: 'report-form', autocomplete: 'off' },
    h('div', { class: 'row' },
      h('label', { for: 'r-template' }, 'Template'),
      h('select', { id: 'r-template' }, info.templates.map((t) => h('option', { value: t.name, selected: t.name === template, title: t.description }, `${t.title} (${t.name})`))),
      h('label', { for: 'r-period' }, 'Month'),
      h('input', { id: 'r-period', type: 'month', value: period }),
      h('span', { class: 'muted' }, 'or from'),
      h('input', { id: 'r-since', type: 'text', placeholder: '2026-11-01 or 30d', value: since, size: 14 }),
      h('span', { class: 'muted' }, 'to'),
      h('input', { id: 'r-until', type: 'text', placeholder: 'now', value: p.get('until') || '', size: 14 }),
      h('label', { for: 'r-cluster' }, 'Clusters'),
      h('input', { id: 'r-cluster', type: 'text', placeholder: 'all', value: p.get('cluster') || '', size: 14 }),
      h('button', { type: 'submit', class: 'primary', id: 'r-preview' }, 'Preview')));
  const status = h('span', { class: 'muted', id: 'report-status' });
  const dl = (format, ext, label) => {
    const allowed = info.formats.includes(format);
    const b = h('button', { type: 'button', id: `r-${format}`, disabled: !allowed }, label);
    b.addEventListener('click', async () => {
      b.disabled = true;
      status.className = 'muted';
      status.textContent = `Building the ${label.toLowerCase()}…`;
      try {
        const body = request(form, format);
        const blob = await api('/api/v1/reports', { method: 'POST', body, blob: true });
        download(`kaudit-${body.template}-${body.period || body.since}.${ext}`, blob);
        status.textContent = `Downloaded the ${label.toLowerCase()}.`;
      } catch (e) {
        status.className = 'error';
        status.textContent = e.message;
      } finally {
        b.disabled = false;
      }
    });
    return b;
  };
  const downloads = h('div', { class: 'card' },
    h('div', { class: 'row' },
      h('span', {}, 'Download:'),
      dl('html', 'html', 'HTML report'),
      dl('pdf', 'pdf', 'PDF'),
      dl('bundle', 'tar.zst', 'Evidence bundle'),
      status),
    info.pdf ? null : h('p', { class: 'muted', id: 'r-pdf-note' }, info.pdf_note || 'PDF is not available on this server.'),
    info.signing ? null : h('p', { class: 'muted' }, 'This server does not hold the log\'s signing key: only the preview can be made.'),
    h('p', { class: 'muted' }, 'The HTML checks its own proofs in the browser with no network; an auditor checks the bundle with: kaudit report verify BUNDLE --key checkpoint.pub'));
  const slot = h('div', {});
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const body = request(form, 'json');
    location.hash = href('reports', { template: body.template, period: body.period, since: body.since, until: body.until, cluster: (body.cluster || []).join(','), run: '1' });
  });
  mount(main, h('h1', {}, 'Reports'), form, downloads, slot);
  if (p.get('run') === '1') {
    mount(slot, h('p', { class: 'loading' }, 'Building the report…'));
    try {
      const rep = await api('/api/v1/reports', { method: 'POST', body: request(form, 'json') });
      mount(slot, preview(rep));
    } catch (e) {
      mount(slot, h('div', { class: 'card status-bad' }, h('p', { class: 'error', id: 'report-error' }, e.message)));
    }
  }
}
