// End-to-end tests of the web console: generated data with injected
// incidents is imported, `kaudit serve` runs with tokens (reader, admin) and
// detection, and headless Chromium drives the pages. The expected answers are
// computed here from the generated JSON lines and the incidents file, not
// taken from the server. Screenshots go to target/e2e-screenshots/.
//
//   node e2e/run.mjs [--bin target/debug/kaudit] [--events 6000]
// Prints `e2e: N passed, M failed`; exits 1 on any failure.

import { mkdtempSync, readFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { kaudit, startServer, launchBrowser } from './lib.mjs';

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

/** An object written at least twice with differing bodies, with under 100 events in all. */
function objectWithDiff(truth) {
  const strip = (b) => {
    const c = JSON.parse(JSON.stringify(b));
    if (c.metadata) { delete c.metadata.resourceVersion; delete c.metadata.managedFields; delete c.metadata.generation; }
    return JSON.stringify(c);
  };
  for (const [k, evs] of truth.byObject) {
    if (evs.length >= 100) continue;
    const bodies = evs
      .filter((e) => e.stage === 'ResponseComplete' && ['create', 'update', 'patch'].includes(e.verb))
      .map((e) => e.responseObject || e.requestObject)
      .filter((b) => b && typeof b === 'object' && b.kind !== 'Status')
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
  kaudit(BIN, ['import', '--data', data, '--cluster', 'e2e', jsonl]);
  const truth = groundTruth(jsonl);
  const incidents = JSON.parse(readFileSync(incidentsFile, 'utf8'));
  const target = objectWithDiff(truth);

  const server = await startServer(BIN, { data, tokens: [READER, ADMIN], workdir: work });
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
