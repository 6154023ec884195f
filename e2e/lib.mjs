// What the end-to-end tests and the UI benchmark share: starting `kaudit
// serve` on 127.0.0.1 with an ephemeral port and waiting for it, launching
// Debian's Chromium through playwright-core, and running kaudit commands.

import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, writeFileSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.KAUDIT_CHROMIUM || '/usr/bin/chromium';

/** Runs a kaudit subcommand to completion; throws with its stderr on failure. */
export function kaudit(bin, args) {
  const r = spawnSync(bin, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`kaudit ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * Starts `kaudit serve` with a config holding `tokens` ({name, token, role}),
 * waits for /readyz, and returns {url, stop}. The server's log goes to
 * `<workdir>/serve.log`. `detect: false` turns live detection off; `queryTimeout`
 * (e.g. '60s') sets query.timeout.
 */
export async function startServer(bin, { data, tokens = [], workdir, extraEnv = {}, detect = true, queryTimeout = null }) {
  const dir = workdir || mkdtempSync(join(tmpdir(), 'kaudit-e2e-'));
  const port = await freePort();
  const cfg = join(dir, 'kaudit.yaml');
  const lines = [`data: ${JSON.stringify(data)}`, `listen: 127.0.0.1:${port}`, 'ingest:', '  min_free_disk: 0'];
  if (!detect) lines.push('detect:', '  enabled: false');
  if (queryTimeout) lines.push('query:', `  timeout: ${queryTimeout}`);
  if (tokens.length) {
    lines.push('auth:', '  tokens:');
    for (const t of tokens) lines.push(`    - {name: ${t.name}, token: ${JSON.stringify(t.token)}, role: ${t.role}}`);
  }
  writeFileSync(cfg, `${lines.join('\n')}\n`);
  const log = openSync(join(dir, 'serve.log'), 'a');
  const child = spawn(bin, ['serve', '--config', cfg], {
    stdio: ['ignore', log, log],
    env: { ...process.env, ...extraEnv },
  });
  let exited = null;
  child.on('exit', (code, sig) => { exited = `exited ${code ?? sig}`; });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (exited) throw new Error(`kaudit serve ${exited}; see ${join(dir, 'serve.log')}`);
    try {
      const r = await fetch(`${url}/readyz`);
      if (r.ok) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`kaudit serve did not become ready; see ${join(dir, 'serve.log')}`);
    }
    await new Promise((res) => setTimeout(res, 100));
  }
  const stop = async () => {
    if (exited) return;
    const done = new Promise((res) => child.once('exit', res));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 20_000);
    await done;
    clearTimeout(t);
  };
  return { url, stop, child, dir };
}

/** Launches headless Chromium with a fresh profile (removed again on close). */
export async function launchBrowser() {
  const profile = mkdtempSync(join(tmpdir(), 'kaudit-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1440, height: 900 },
  });
  // Closing the browser also removes its throw-away profile.
  const close = context.close.bind(context);
  context.close = async () => {
    await close();
    rmSync(profile, { recursive: true, force: true });
  };
  return context;
}
