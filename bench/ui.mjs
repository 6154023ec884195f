// UI benchmark: `kaudit serve` over a large store, each console page opened
// in headless Chromium by URL (a full load, as when following a link), timed
// until its main content is rendered ("usable"): in the page, from the
// navigation's start to the first frame after every element the page must
// show is in the document. The driver's own view (from asking Chromium to
// navigate to seeing the elements over the DevTools protocol, which adds its
// round trips and polling) is shown beside it as "wall". The first of the loads
// (cold: the server's per-query caches and the browser's empty) is shown
// apart and left out of the median. Baselines in the same run:
// the API floor (the same API requests the page made, replayed in parallel
// with no browser) and the same page over a smaller store.
//
//   node bench/ui.mjs --bin target/release/kaudit --store BIG --baseline-store SMALL [--runs 5]

import { resolve } from 'node:path';
import { startServer, launchBrowser } from '../e2e/lib.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
const BIN = resolve(opt('bin', 'target/release/kaudit'));
const BIG = opt('store');
const SMALL = opt('baseline-store');
const RUNS = Number(opt('runs', '5'));
const TARGET_MS = 300;

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };

async function getJson(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: ${r.status} ${await r.text()}`);
  return r.json();
}

/** Pages to open, with what must be on screen for each to count as usable. */
async function pages(url) {
  const q = (s) => encodeURIComponent(s);
  const del = await getJson(`${url}/api/v1/events?q=${q('verb=delete stage=ResponseComplete')}&limit=1`);
  const patch = await getJson(`${url}/api/v1/events?q=${q('resource=deployments verb=patch stage=ResponseComplete')}&limit=1`);
  const human = await getJson(`${url}/api/v1/events?q=${q('user=*@example.com')}&limit=1`);
  const o = patch.events[0].event.objectRef;
  const user = human.events[0].event.user.username;
  return [
    ['search (all events)', '#/search', ['#results tbody tr', '#match-total']],
    ['search (query)', `#/search?q=${q('verb=delete resource=pods ns=payments')}`, ['#results tbody tr', '#match-total']],
    ['event detail', `#/event/${q(del.events[0].event.auditID)}`, ['.stage .proof-verdict']],
    ['object history', `#/object/${[o.resource, o.namespace, o.name].map(q).join('/')}`, ['#history tbody tr']],
    ['user activity', `#/user/${q(user)}`, ['#user-summary', '#rbac']],
    ['alerts', '#/alerts', ['#alerts tbody tr, #no-alerts']],
    ['dashboard', '#/dashboard', ['#kpi-total', '#top-users tr', '#latency tbody tr', '#verb-chart svg path']],
    ['integrity', '#/integrity', ['#tree-size', '#verify-result']],
  ];
}

/**
 * Runs in every page before its own scripts: for the selectors the benchmark
 * names in `window.name`, logs the time of the first frame after all of them
 * are in the document (when the user can see them). Logging, unlike polling
 * from the driver, puts no driver code on the page's main thread while it
 * loads.
 */
function watchReady() {
  const sels = (window.name || '').split('\u0001').filter(Boolean);
  if (!sels.length) return;
  let seen = false;
  const check = () => {
    if (seen || !sels.every((s) => document.querySelector(s))) return;
    seen = true;
    requestAnimationFrame(() => console.debug(`kaudit-usable ${performance.now()}`));
  };
  new MutationObserver(check).observe(document, { childList: true, subtree: true, attributes: true });
}

async function measureStore(data, label) {
  const server = await startServer(BIN, { data, detect: false });
  const browser = await launchBrowser();
  const page = await browser.newPage();
  await page.addInitScript(watchReady);
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const out = new Map();
  try {
    const size = (await getJson(`${server.url}/api/v1/status`)).tree_size;
    console.log(`${label}: ${data} (${size.toLocaleString('en-US')} events) at ${server.url}`);
    for (const [name, hash, ready] of await pages(server.url)) {
      const times = [];
      const walls = [];
      let first = 0;
      let apiUrls = [];
      for (let run = 0; run <= RUNS; run++) {
        const requested = [];
        const onReq = (r) => { if (r.url().includes('/api/v1/')) requested.push(r.url()); };
        page.on('request', onReq);
        await page.goto('about:blank');
        await page.evaluate((n) => { window.name = n; }, ready.join('\u0001'));
        const usable = page.waitForEvent('console', {
          predicate: (m) => m.text().startsWith('kaudit-usable '), timeout: 60_000,
        });
        const t0 = performance.now();
        await page.goto(`${server.url}/${hash}`, { waitUntil: 'commit' });
        let ms;
        try {
          ms = Number((await usable).text().split(' ')[1]);
        } catch (e) {
          const text = await page.textContent('#main').catch(() => '?');
          throw new Error(`${name} (run ${run}) not usable: ${e.message}\npage shows: ${text.slice(0, 400)}`);
        }
        const wall = performance.now() - t0;
        page.off('request', onReq);
        if (run > 0) { times.push(ms); walls.push(wall); } // run 0 warms caches
        else first = ms;
        apiUrls = requested;
      }
      // The API floor: the same requests, all at once, no browser.
      const floors = [];
      for (let run = 0; run < RUNS; run++) {
        const t0 = performance.now();
        await Promise.all(apiUrls.map((u) => fetch(u).then((r) => r.arrayBuffer())));
        floors.push(performance.now() - t0);
      }
      out.set(name, { median: median(times), max: Math.max(...times), wall: median(walls), first, api: median(floors), calls: apiUrls.length });
    }
  } finally {
    await browser.close().catch(() => {});
    await server.stop();
  }
  if (errors.length) throw new Error(`page errors: ${errors.join('; ')}`);
  return { out, data };
}

const big = await measureStore(BIG, 'store');
const small = SMALL ? await measureStore(SMALL, 'baseline store') : null;

const pad = (s, n) => String(s).padEnd(n);
const num = (x) => x.toFixed(0).padStart(6);
console.log('');
console.log(`${pad('page', 20)} ${'median'.padStart(7)} ${'max'.padStart(6)} ${'wall'.padStart(6)} ${'first'.padStart(6)} ${'API'.padStart(6)} ${'x API'.padStart(6)} ${'small'.padStart(6)} ${'x small'.padStart(7)}  < ${TARGET_MS} ms`);
let over = 0;
for (const [name, r] of big.out) {
  const s = small && small.out.get(name);
  const ok = r.median < TARGET_MS;
  if (!ok) over++;
  console.log(`${pad(name, 20)} ${num(r.median)}ms ${num(r.max)} ${num(r.wall)} ${num(r.first)} ${num(r.api)} ${(r.median / Math.max(1, r.api)).toFixed(2).padStart(6)} ${s ? num(s.median) : '     -'} ${s ? (r.median / Math.max(1, s.median)).toFixed(2).padStart(7) : '      -'}  ${ok ? 'yes' : 'NO'}`);
}
console.log(`\nui: ${big.out.size - over} of ${big.out.size} pages usable in under ${TARGET_MS} ms (median of ${RUNS} loads)`);
