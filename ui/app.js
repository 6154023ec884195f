// The console shell: routing (all state in the URL hash, so links can be
// shared), sign-in when the server asks for a token, the role of the caller,
// and the jump box that opens a user or an object.

import { api, token, setUnauthorizedHandler, AuthError } from './api.js';
import { h, mount, route } from './util.js';
import * as search from './pages/search.js';
import * as event from './pages/event.js';
import * as object from './pages/object.js';
import * as user from './pages/user.js';
import * as alerts from './pages/alerts.js';
import * as dashboard from './pages/dashboard.js';
import * as integrity from './pages/integrity.js';
import * as reports from './pages/reports.js';

const PAGES = { search, event, object, user, alerts, dashboard, integrity, reports };
const NAV_OF = { event: 'search', object: 'search', user: 'search' };

/** What every page gets: who is signed in and a way to stop its timers. */
export const session = { role: null, name: null, auth: false };
let cleanup = [];
let renderId = 0;

function showLogin(message) {
  const box = document.getElementById('login');
  const err = document.getElementById('login-error');
  err.hidden = !message || !token.get();
  err.textContent = message || '';
  box.hidden = false;
  document.getElementById('login-token').focus();
}

async function whoami() {
  const me = await api('/api/v1/whoami');
  Object.assign(session, { role: me.role, name: me.name, auth: me.auth });
  document.getElementById('who').textContent = me.auth ? `${me.name} · ${me.role}` : '';
  document.getElementById('logout').hidden = !me.auth;
  document.body.dataset.role = me.role;
}

async function render() {
  const id = ++renderId;
  for (const f of cleanup) f();
  cleanup = [];
  const r = route();
  const page = PAGES[r.page] || search;
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', a.dataset.page === (NAV_OF[r.page] || r.page));
  }
  const main = document.getElementById('main');
  // Who is signed in is asked alongside the page's own requests, not before
  // them (one round trip less on every full load); a page that needs the
  // role waits for `ctx.ready`. Without a valid token both get a 401 and
  // the sign-in form shows.
  const who = session.role ? Promise.resolve() : whoami();
  const ctx = {
    session,
    ready: who,
    onCleanup: (f) => cleanup.push(f),
    current: () => id === renderId,
  };
  try {
    await Promise.all([who, page.render(main, r, ctx)]);
  } catch (e) {
    if (e instanceof AuthError || id !== renderId) return;
    console.warn(e);
    mount(main, h('div', { class: 'card status-bad' }, h('p', { class: 'error' }, String(e.message || e))));
  }
}

function init() {
  setUnauthorizedHandler((m) => { session.role = null; showLogin(m); });
  document.getElementById('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const input = document.getElementById('login-token');
    token.set(input.value.trim());
    input.value = '';
    try {
      await whoami();
      document.getElementById('login').hidden = true;
      render();
    } catch (e) {
      if (!(e instanceof AuthError)) showLogin(String(e.message || e));
    }
  });
  document.getElementById('logout').addEventListener('click', () => {
    token.clear();
    session.role = null;
    document.getElementById('who').textContent = '';
    showLogin('');
  });
  document.getElementById('jump').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = document.getElementById('jump-input');
    const v = input.value.trim();
    if (!v) return;
    input.value = '';
    const parts = v.split('/').filter(Boolean);
    location.hash = parts.length >= 2 && !v.includes(':')
      ? `#/object/${parts.map(encodeURIComponent).join('/')}`
      : `#/user/${encodeURIComponent(v)}`;
  });
  window.addEventListener('hashchange', render);
  render();
}

init();
