// End-to-end tests of the web console: generated data with injected
// incidents is imported, `kaudit serve` runs with tokens (reader, admin) and
// detection, and headless Chromium drives the pages. The expected answers are
// computed here from the generated JSON lines and the incidents file, not
// taken from the server. Screenshots go to target/e2e-screenshots/.
//
//   node e2e/run.mjs [--bin target/debug/kaudit] [--events 6000]
// Prints `e2e: N passed, M failed`; exits 1 on any failure.

import { mkdtempSync, readFileSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { kaudit, startServer, launchBrowser } from './lib.mjs';
import { verifyConsistency, parseNote } from '../ui/sha256.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
const BIN = resolve(opt('bin', join(root, 'target/debug/kaudit')));
const EVENTS = Number(opt('events', '6000'));
const SHOTS = resolve(opt('screenshots', join(root, 'target/e2e-screenshots')));
const READER = { name: 'e2e-reader', token: 'reader-token-e2e-0123456789', role: 'reader' };
const ADMIN = { name: 'e2e-admin', token: 'admin-token-e2e-0123456789', role: 'admin' };

// Console messages that are the expected answers, not faults: the 401 before
// signing in, and the 404 of /api/v1/sinks on a server without sinks.
const EXPECTED_CONSOLE = [/status of 401/, /status of 404.*\/api\/v1\/sinks/];

let passed = 0;
let failed = 0;
const results = [];

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

function eq(actual, expected, what) {
  const a = JSON.stringify(actual), e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
}

let onFailure = async () => {};

async function test(name, f) {
  const t0 = Date.now();
  try {
    await f();
    passed++;
    results.push(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed++;
    await onFailure(name).catch(() => {});
    results.push(`FAIL ${name}: ${e.stack || e}`);
  }
  console.log(results[results.length - 1]);
}

// ---- ground truth from the generated data --------------------------------

function groundTruth(jsonl) {
  const events = readFileSync(jsonl, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const objKey = (o) => [o.resource, o.namespace || '', o.name].join('/');
  const byObject = new Map();
  const byUser = new Map();
  const idsByUser = new Map();
  for (const e of events) {
    const u = e.user && e.user.username;
    if (u) {
      byUser.set(u, (byUser.get(u) || 0) + 1);
      if (!idsByUser.has(u)) idsByUser.set(u, new Set());
      idsByUser.get(u).add(e.auditID);
    }
    const o = e.objectRef;
    if (o && o.resource && o.name) {
      const k = objKey(o);
      if (!byObject.has(k)) byObject.set(k, []);
      byObject.get(k).push(e);
    }
  }
  return { events, byObject, byUser, idsByUser };
}

/**
 * An object written at least twice with differing versions, with under 100 events in all. A
 * version is what the history page diffs: the response body when it is the object, else the
 * request body of a create or update (a patch body is a patch, not the object).
 */
function objectWithDiff(truth) {
  const strip = (b) => {
    const c = JSON.parse(JSON.stringify(b));
    if (c.metadata) { delete c.metadata.resourceVersion; delete c.metadata.managedFields; delete c.metadata.generation; }
    return JSON.stringify(c);
  };
  const isObject = (b) => b && typeof b === 'object' && b.metadata && b.kind !== 'Status';
  const version = (e) => {
    if (isObject(e.responseObject)) return e.responseObject;
    return e.verb !== 'patch' && isObject(e.requestObject) ? e.requestObject : null;
  };
  for (const [k, evs] of truth.byObject) {
    if (evs.length >= 100) continue;
    const bodies = evs
      .filter((e) => e.stage === 'ResponseComplete' && ['create', 'update', 'patch'].includes(e.verb))
      .filter((e) => ['', 'status'].includes(e.objectRef.subresource || ''))
      .filter((e) => !(e.responseStatus && e.responseStatus.code >= 400))
      .map(version)
      .filter(Boolean)
      .map(strip);
    for (let i = 1; i < bodies.length; i++) {
      if (bodies[i] !== bodies[i - 1]) {
        const [resource, namespace, name] = k.split('/');
        return { resource, namespace, name, events: evs };
      }
    }
  }
  return null;
}

// ---- the run -------------------------------------------------------------

async function main() {
  const work = mkdtempSync(join(tmpdir(), 'kaudit-e2e-'));
  mkdirSync(SHOTS, { recursive: true });
  const jsonl = join(work, 'events.jsonl');
  const incidentsFile = join(work, 'incidents.json');
  const data = join(work, 'data');
  kaudit(BIN, ['gen', '--events', String(EVENTS), '--seed', '11', '--incident-every', '500', '--incidents', incidentsFile, '-o', jsonl]);
  // Imported in two halves: two signed checkpoints, so a report over the
  // whole time has a real consistency proof from the first to the second.
  const lines = readFileSync(jsonl, 'utf8').split('\n').filter(Boolean);
  const half = Math.floor(lines.length / 2);
  const [partA, partB] = [join(work, 'a.jsonl'), join(work, 'b.jsonl')];
  writeFileSync(partA, `${lines.slice(0, half).join('\n')}\n`);
  writeFileSync(partB, `${lines.slice(half).join('\n')}\n`);
  kaudit(BIN, ['import', '--data', data, '--cluster', 'e2e', partA]);
  kaudit(BIN, ['import', '--data', data, '--cluster', 'e2e', partB]);
  const truth = groundTruth(jsonl);
  const incidents = JSON.parse(readFileSync(incidentsFile, 'utf8'));
  const target = objectWithDiff(truth);

  // Reports run under query.timeout; the debug build on a shared 2-core
  // machine needs more than the 10 s default for a year-long report + PDF.
  const server = await startServer(BIN, { data, tokens: [READER, ADMIN], workdir: work, queryTimeout: '60s' });
  const browser = await launchBrowser();
  const consoleErrors = [];
  const page = await browser.newPage();
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const where = m.location() ? ` (${m.location().url})` : '';
    const text = `${m.text()}${where}`;
    if (!EXPECTED_CONSOLE.some((re) => re.test(text))) consoleErrors.push(text);
  });
  page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));
  const shot = (name, fullPage = false) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage });
  onFailure = (name) => page.screenshot({ path: join(SHOTS, `FAILED-${name.replace(/[^a-z0-9]+/gi, '-').slice(0, 40)}.png`) });
  const go = async (hash) => {
    await page.goto(`${server.url}/${hash}`);
  };
  const signIn = async (tok) => {
    await page.waitForSelector('#login:not([hidden])');
    await page.fill('#login-token', tok.token);
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('#login', { state: 'hidden' });
    await page.waitForFunction((n) => document.getElementById('who').textContent.includes(n), tok.name);
  };

  try {
    await test('security headers on the console and no secrets in URLs', async () => {
      const r = await fetch(`${server.url}/`);
      eq(r.status, 200, 'GET /');
      const csp = r.headers.get('content-security-policy') || '';
      for (const d of ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "connect-src 'self'", "base-uri 'none'"]) {
        assert(csp.includes(d), `CSP lacks ${d}: ${csp}`);
      }
      assert(!csp.includes('unsafe-inline'), 'CSP allows inline code');
      eq(r.headers.get('x-content-type-options'), 'nosniff', 'X-Content-Type-Options');
      eq(r.headers.get('x-frame-options'), 'DENY', 'X-Frame-Options');
      eq(r.headers.get('referrer-policy'), 'no-referrer', 'Referrer-Policy');
      const js = await fetch(`${server.url}/ui/app.js`);
      assert((js.headers.get('content-type') || '').startsWith('text/javascript'), 'app.js content type');
      const api = await fetch(`${server.url}/api/v1/events`);
      eq(api.status, 401, 'API without a token');
    });

    await test('login form: a wrong token is refused, a reader token signs in', async () => {
      await go('#/search');
      await page.waitForSelector('#login:not([hidden])');
      await shot('login');
      await page.fill('#login-token', 'not-a-valid-token-at-all');
      await page.click('#login-form button[type=submit]');
      await page.waitForSelector('#login-error:not([hidden])');
      await page.fill('#login-token', READER.token);
      await page.click('#login-form button[type=submit]');
      await page.waitForSelector('#login', { state: 'hidden' });
      await page.waitForSelector('#results, #no-results');
      assert(!page.url().includes(READER.token), 'token in the URL');
      const who = await page.textContent('#who');
      assert(who.includes('reader'), `role shown: ${who}`);
    });

    let auditId = null;
    await test('search: autocomplete, the right rows, and the histogram total', async () => {
      assert(target, 'the generated data has an object written twice with different bodies');
      await go('#/search');
      await page.waitForSelector('#q');
      await page.fill('#q', '');
      await page.type('#q', 'reso');
      await page.waitForSelector('#suggest:not([hidden]) div');
      const fieldSugg = await page.$$eval('#suggest div span:first-child', (els) => els.map((e) => e.textContent));
      assert(fieldSugg.includes('resource='), `field suggestions: ${fieldSugg}`);
      await page.keyboard.press('Tab');
      await page.type('#q', target.resource.slice(0, 3));
      await page.waitForFunction((r) => [...document.querySelectorAll('#suggest div span:first-child')].some((e) => e.textContent === r), target.resource);
      const query = `resource=${target.resource} ns=${target.namespace} name=${target.name}`;
      await page.fill('#q', query);
      await page.click('#search-form button[type=submit]');
      await page.waitForFunction((q) => decodeURIComponent(location.hash).includes(q.split(' ')[0]), query);
      await page.waitForSelector('#results tbody tr');
      await page.waitForSelector('#match-total');
      const ids = await page.$$eval('#results tbody tr', (rows) => rows.map((r) => r.dataset.auditId));
      const expected = target.events;
      eq(ids.length, expected.length, 'rows');
      eq([...ids].sort(), expected.map((e) => e.auditID).sort(), 'auditIDs of the rows');
      const total = await page.textContent('#match-total');
      eq(total, `${expected.length.toLocaleString('en-US')} matching events`, 'histogram total');
      assert(await page.$('#histogram svg rect.bar'), 'histogram bars drawn');
      // The state is in the URL: reloading the link shows the same rows.
      await page.reload();
      await page.waitForSelector('#results tbody tr');
      eq(await page.$$eval('#results tbody tr', (r) => r.length), expected.length, 'rows after reload');
      eq(await page.inputValue('#q'), query, 'query restored from the URL');
      await shot('search');
      auditId = ids[0];
    });

    await test('event detail: every stage with a verified inclusion proof', async () => {
      assert(auditId, 'a row to open');
      await page.click(`#results tbody tr[data-audit-id="${auditId}"] td:first-child`);
      await page.waitForSelector('.stage');
      const stages = await page.$$eval('.stage', (els) => els.map((e) => e.dataset.stage));
      const expected = truth.events.filter((e) => e.auditID === auditId).map((e) => e.stage);
      eq([...stages].sort(), [...expected].sort(), 'stages');
      await page.waitForSelector('.proof-verdict.pending', { state: 'detached' });
      const verdicts = await page.$$eval('.proof-verdict', (els) => els.map((e) => e.textContent));
      eq(verdicts.length, expected.length, 'one proof per stage');
      for (const v of verdicts) assert(v.startsWith('✔ verified'), `proof verdict: ${v}`);
      eq(await page.textContent('#audit-id'), auditId, 'auditID shown');
      await shot('event');
    });

    await test('event detail: a tampered proof, signature or event is "not verified"', async () => {
      assert(auditId, 'an event to open');
      const flipSig = (note) => {
        const lines = note.split('\n');
        const i = lines.findLastIndex((l) => l.startsWith('\u2014 '));
        const [dash, name, b64] = lines[i].split(' ');
        const blob = Buffer.from(b64, 'base64');
        blob[20] ^= 0x01; // inside the Ed25519 signature, after the key ID
        lines[i] = [dash, name, blob.toString('base64')].join(' ');
        return lines.join('\n');
      };
      const tamperings = {
        'checkpoint signature': (st) => { st.proof.checkpoint = flipSig(st.proof.checkpoint); },
        'leaf data': (st) => {
          const b = Buffer.from(st.proof.leaf_data, 'base64');
          b[b.length - 40] ^= 0x01;
          st.proof.leaf_data = b.toString('base64');
        },
        'event shown': (st) => { st.event.user = { ...(st.event.user || {}), username: 'someone-else' }; },
      };
      for (const [what, tamper] of Object.entries(tamperings)) {
        const pattern = '**/api/v1/events/*';
        await page.route(pattern, async (route) => {
          const resp = await route.fetch();
          const body = await resp.json();
          for (const st of body.stages) {
            assert(st.proof.checkpoint, 'the imported data is covered by a signed checkpoint');
            tamper(st);
          }
          await route.fulfill({ response: resp, json: body });
        });
        try {
          await page.goto('about:blank');
          await go(`#/event/${encodeURIComponent(auditId)}`);
          await page.waitForSelector('.stage');
          await page.waitForSelector('.proof-verdict.pending', { state: 'detached' });
          const verdicts = await page.$$eval('.proof-verdict', (els) => els.map((e) => e.textContent));
          assert(verdicts.length > 0, 'proof verdicts shown');
          for (const v of verdicts) assert(v.startsWith('✘ not verified'), `${what} tampered, verdict: ${v}`);
        } finally {
          await page.unroute(pattern);
        }
      }
      // Untampered again: verified.
      await page.goto('about:blank');
      await go(`#/event/${encodeURIComponent(auditId)}`);
      await page.waitForSelector('.stage');
      await page.waitForSelector('.proof-verdict.pending', { state: 'detached' });
      const verdicts = await page.$$eval('.proof-verdict', (els) => els.map((e) => e.textContent));
      for (const v of verdicts) assert(v.startsWith('✔ verified'), `untampered verdict: ${v}`);
    });

    await test('object history from the event: timeline and the diff', async () => {
      await page.click('#object-link');
      await page.waitForSelector('#history tbody tr');
      const rows = await page.$$eval('#history tbody tr', (r) => r.length);
      eq(rows, target.events.length, 'history entries');
      const diffs = await page.$$eval('#history .diff li', (els) => els.map((e) => e.textContent));
      assert(diffs.length > 0, 'no diff shown');
      assert(await page.$('svg.timeline circle'), 'timeline drawn');
      await shot('object-history');
    });

    await test('object history pages: Older continues where the newest page ends', async () => {
      // The busiest object: more events than one page (100) holds.
      const [key, evs] = [...truth.byObject.entries()].sort((a, b) => b[1].length - a[1].length)[0];
      assert(evs.length > 100, `the busiest object has ${evs.length} events, not over one page`);
      await go(`#/object/${key.split('/').filter(Boolean).map(encodeURIComponent).join('/')}`);
      await page.waitForSelector('#history tbody tr');
      const ids = () => page.$$eval('#history tbody tr', (r) => r.map((x) => x.dataset.auditId));
      const first = await ids();
      eq(first.length, 100, 'a full first page');
      await page.click('#older-page');
      await page.waitForFunction((prev) => {
        const r = document.querySelector('#history tbody tr');
        return r && r.dataset.auditId !== prev;
      }, first[0]);
      const second = await ids();
      eq(second.length, Math.min(100, evs.length - 100), 'the second page');
      // Pages of an object's history are disjoint by event; count stages per
      // auditID to compare with the ground truth.
      const seen = new Map();
      for (const id of [...first, ...second]) seen.set(id, (seen.get(id) || 0) + 1);
      const truthStages = new Map();
      for (const e of evs) truthStages.set(e.auditID, (truthStages.get(e.auditID) || 0) + 1);
      for (const [id, n] of seen) assert(n <= (truthStages.get(id) || 0), `${id} shown ${n} times`);
      assert(page.url().includes('c='), 'the cursor is in the URL');
    });

    await test('user activity: requests, sessions and least-privilege RBAC', async () => {
      const user = target.events[0].user.username;
      await go(`#/user/${encodeURIComponent(user)}`);
      await page.waitForSelector('#user-summary');
      const summary = await page.textContent('#user-summary');
      const n = truth.idsByUser.get(user).size;
      assert(summary.startsWith(`${n.toLocaleString('en-US')} requests`), `summary "${summary}", expected ${n} requests`);
      const yaml = await page.textContent('#rbac');
      assert(yaml.includes('kind: ClusterRole') || yaml.includes('kind: Role'), `rbac: ${yaml.slice(0, 200)}`);
      await shot('user');
    });

    await test("alerts: the injected incident's alert links to its event", async () => {
      const ids = new Set(incidents.flatMap((i) => i.auditIDs));
      // Detection follows the store; wait until it has caught up with the import.
      let alerts = [];
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline) {
        const r = await fetch(`${server.url}/api/v1/alerts?limit=10000`, { headers: { Authorization: `Bearer ${READER.token}` } });
        alerts = (await r.json()).alerts;
        if (alerts.some((a) => ids.has(a.audit_id))) break;
        await new Promise((res) => setTimeout(res, 250));
      }
      const hit = alerts.find((a) => ids.has(a.audit_id));
      assert(hit, `no alert for any of ${incidents.length} injected incidents`);
      await go('#/alerts');
      await page.waitForSelector('#alerts tbody tr.alert-rule');
      const rules = await page.$$eval('#alerts tr.alert-rule', (rows) => rows.map((r) => r.dataset.rule));
      assert(rules.includes(hit.rule), `rule ${hit.rule} listed among ${rules}`);
      await page.click(`#alerts tr.alert-rule[data-rule="${hit.rule.replace(/"/g, '\\"')}"]`);
      await page.waitForSelector(`.alert-items a[href="#/event/${encodeURIComponent(hit.audit_id)}"]`);
      // The priority filter keeps only that priority.
      await page.selectOption('#f-priority', hit.priority);
      await page.waitForFunction((p) => location.hash.includes(`priority=${p}`), hit.priority);
      await page.waitForSelector('#alerts tbody tr.alert-rule, #no-alerts');
      await page.selectOption('#f-priority', '');
      await page.waitForSelector('#alerts tbody tr.alert-rule');
      await page.click(`#alerts tr.alert-rule[data-rule="${hit.rule.replace(/"/g, '\\"')}"]`);
      await page.waitForSelector('.alert-items');
      await shot('alerts');
    });

    await test('dashboard: top users match the data; latency and verb chart drawn', async () => {
      await go('#/dashboard');
      await page.waitForSelector('#top-users tr');
      await page.waitForSelector('#latency tbody tr');
      await page.waitForSelector('#verb-chart svg path');
      await page.waitForSelector('#sinks');
      const top = await page.$eval('#top-users tr td:first-child', (e) => e.textContent);
      const max = Math.max(...truth.byUser.values());
      const tops = [...truth.byUser.entries()].filter(([, n]) => n === max).map(([u]) => u);
      assert(tops.includes(top), `top user ${top}, expected one of ${tops}`);
      eq(await page.textContent('#kpi-total'), truth.events.length.toLocaleString('en-US'), 'events in range');
      await shot('dashboard', true);
    });

    await test('integrity: a reader may not verify; an admin runs it and it is OK', async () => {
      await go('#/integrity');
      await page.waitForSelector('#run-verify');
      assert(await page.$eval('#run-verify', (b) => b.disabled), 'verify button enabled for a reader');
      eq(await page.textContent('#tree-size'), truth.events.length.toLocaleString('en-US'), 'tree size');
      await page.click('#logout');
      await signIn(ADMIN);
      await page.waitForSelector('#run-verify:not([disabled])');
      await page.click('#run-verify');
      await page.waitForSelector('#verify-verdict', { timeout: 60_000 });
      eq(await page.textContent('#verify-verdict'), 'OK', 'verification verdict');
      const text = await page.textContent('#verify-result');
      assert(text.includes(`${truth.events.length.toLocaleString('en-US')} records re-hashed`), text);
      // Nothing trusted is configured here: the console says what "OK" does not rule out.
      const caveat = await page.textContent('#verify-caveat');
      assert(caveat.includes("checked against the store's own key"), `caveat: ${caveat}`);
      assert((await page.textContent('#verify-key')).includes("the store's own key"), 'key source shown');
      await shot('integrity');
    });

    // ---- compliance reports -------------------------------------------
    const incidentIds = new Set(incidents.flatMap((i) => i.auditIDs));
    const truthIds = new Set(truth.events.map((e) => e.auditID));
    const authz = { Authorization: `Bearer ${READER.token}`, 'Content-Type': 'application/json' };

    await test('reports: the page previews a template with the rows and counts the API signs', async () => {
      await go('#/reports');
      await page.waitForSelector('#r-template option[value="pci-dss"]', { state: 'attached' });
      await page.selectOption('#r-template', 'pci-dss');
      await page.fill('#r-since', '');
      await page.fill('#r-period', '2026-01');
      await page.click('#r-preview');
      await page.waitForSelector('#report-sections tr.report-section', { timeout: 60_000 });
      const shown = await page.$$eval('#report-sections tr.report-section', (rows) => rows.map((r) => [r.dataset.section, Number(r.dataset.count), Number(r.dataset.listed)]));
      const r = await fetch(`${server.url}/api/v1/reports`, { method: 'POST', headers: authz, body: JSON.stringify({ template: 'pci-dss', period: '2026-01' }) });
      eq(r.status, 200, 'POST /api/v1/reports');
      const rep = await r.json();
      eq(shown, rep.sections.map((s) => [s.id, s.count, s.rows.length]), 'sections shown vs the API');
      const listed = rep.sections.flatMap((s) => s.rows.map((x) => x.auditID));
      assert(listed.length > 0, 'rows listed');
      for (const id of listed) assert(truthIds.has(id), `row ${id} is not a generated event`);
      assert(listed.some((id) => incidentIds.has(id)), 'an injected incident is listed');
      eq(rep.anchor.size, truth.events.length, 'rows proven against the latest checkpoint');
      // The rows link to their events.
      const first = await page.$eval('table.report-rows tbody tr', (tr) => tr.dataset.auditId);
      assert(truthIds.has(first), `linked row ${first}`);
      eq(await page.$eval('#r-pdf', (b) => b.disabled), false, 'PDF offered (Chromium is installed)');
      await shot('reports');
    });

    let reportHtml = null;
    await test('reports: the downloaded HTML report verifies itself in the browser, consistency proof included', async () => {
      await page.fill('#r-period', '');
      await page.fill('#r-since', '2026-01-01');
      const [dl] = await Promise.all([page.waitForEvent('download', { timeout: 60_000 }), page.click('#r-html')]);
      const file = join(work, 'report.html');
      await dl.saveAs(file);
      reportHtml = readFileSync(file, 'utf8');
      const files = JSON.parse(reportHtml.match(/<script type="application\/json" id="kaudit-bundle">([\s\S]*?)<\/script>/)[1]);
      const report = JSON.parse(Buffer.from(files['report.json'], 'base64').toString('utf8'));
      assert(report.first.size < report.anchor.size, `first ${report.first.size} < anchor ${report.anchor.size}: a real consistency proof`);
      // The console's proof code (ui/sha256.js) accepts the proof and refuses a changed one.
      const cons = JSON.parse(Buffer.from(files['consistency.json'], 'base64').toString('utf8'));
      const root = (n) => parseNote(Buffer.from(files[`checkpoints/${n}.note`], 'base64').toString('utf8')).root;
      const proof = { old_size: cons.old_size, new_size: cons.new_size, old_root: root(cons.old_size), new_root: root(cons.new_size), hashes: cons.hashes };
      eq(verifyConsistency(proof), { ok: true, reason: '' }, 'consistency proof');
      const h0 = Buffer.from(cons.hashes[0], 'base64');
      h0[0] ^= 1;
      assert(!verifyConsistency({ ...proof, hashes: [h0.toString('base64'), ...cons.hashes.slice(1)] }).ok, 'a changed consistency proof verified');
      const view = await browser.newPage();
      try {
        await view.goto(pathToFileURL(file).href);
        await view.waitForFunction(() => document.body.dataset.verified, null, { timeout: 60_000 });
        const verdict = await view.textContent('#verdict');
        eq(await view.evaluate(() => document.body.dataset.verified), 'yes', `verdict: ${verdict}`);
        assert(verdict.includes(`consistency from tree size ${report.first.size} checked`), verdict);
        assert(verdict.includes('signatures verified'), `Ed25519 checked in the browser: ${verdict}`);
        const marks = await view.$$eval('td.proof', (tds) => tds.map((t) => t.textContent));
        assert(marks.length > 0 && marks.every((m) => m === '✓'), `row marks: ${marks.slice(0, 5)}`);
        await view.screenshot({ path: join(SHOTS, 'report-verified.png') });
      } finally {
        await view.close();
      }
    });

    await test('reports: a report with one byte of a cited event changed shows "not verified"', async () => {
      assert(reportHtml, 'the HTML report of the previous test');
      const m = reportHtml.match(/(<script type="application\/json" id="kaudit-bundle">)([\s\S]*?)(<\/script>)/);
      const files = JSON.parse(m[2]);
      const name = Object.keys(files).find((n) => n.startsWith('events/'));
      const ev = Buffer.from(files[name], 'base64');
      const at = ev.indexOf('"verb":"') + 8;
      assert(at > 8, 'a verb in the event');
      ev[at] = ev[at] === 0x78 ? 0x79 : 0x78; // one byte, the JSON stays valid
      files[name] = ev.toString('base64');
      const tampered = reportHtml.replace(m[0], `${m[1]}${JSON.stringify(files).replace(/</g, '\\u003c')}${m[3]}`);
      const file = join(work, 'report-tampered.html');
      writeFileSync(file, tampered);
      const view = await browser.newPage();
      try {
        await view.goto(pathToFileURL(file).href);
        await view.waitForFunction(() => document.body.dataset.verified, null, { timeout: 60_000 });
        eq(await view.evaluate(() => document.body.dataset.verified), 'no', 'tampered report verdict');
        const verdict = await view.textContent('#verdict');
        assert(verdict.startsWith('NOT VERIFIED') && verdict.includes(name), `verdict names ${name}: ${verdict}`);
        const seq = name.match(/\d+/)[0];
        const marks = await view.$$eval(`tr[data-seq="${seq}"] td.proof`, (tds) => tds.map((t) => t.textContent));
        assert(marks.length > 0 && marks.every((x) => x === '✗'), `marks of the changed row: ${marks}`);
      } finally {
        await view.close();
      }
    });

    await test('reports: the PDF and the bundle download', async () => {
      await page.fill('#r-since', '');
      await page.fill('#r-period', '2026-01');
      const [pdf] = await Promise.all([page.waitForEvent('download', { timeout: 90_000 }), page.click('#r-pdf')]);
      const pdfFile = join(work, 'report.pdf');
      await pdf.saveAs(pdfFile);
      eq(readFileSync(pdfFile).subarray(0, 4).toString('latin1'), '%PDF', 'PDF header');
      const [bundle] = await Promise.all([page.waitForEvent('download', { timeout: 60_000 }), page.click('#r-bundle')]);
      const bundleFile = join(work, 'report.tar.zst');
      await bundle.saveAs(bundleFile);
      const key = join(work, 'checkpoint.pub');
      writeFileSync(key, await (await fetch(`${server.url}/api/v1/checkpoint/public-key`, { headers: authz })).text());
      const out = kaudit(BIN, ['report', 'verify', bundleFile, '--key', key]);
      assert(out.startsWith('OK: '), out);
    });

    await test('no console errors or CSP violations on any page', async () => {
      eq(consoleErrors, [], 'console errors');
    });
  } finally {
    await browser.close().catch(() => {});
    await server.stop();
    if (!failed) rmSync(work, { recursive: true, force: true });
    else console.log(`kept ${work} (serve.log inside)`);
  }
}

try {
  await main();
} catch (e) {
  failed++;
  console.log(`FAIL setup: ${e.stack || e}`);
}
console.log(`e2e: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
