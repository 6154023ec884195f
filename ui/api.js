// The one way pages talk to the server: JSON over fetch, with the bearer token
// (kept in this tab's sessionStorage, never in a URL) when one was given.

const KEY = 'kaudit.token';

export class AuthError extends Error {}

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

let onUnauthorized = () => {};
/** Called with the message of any 401, so the app can show its login form. */
export function setUnauthorizedHandler(f) { onUnauthorized = f; }

/**
 * Calls the API; `params` become the query string, `body` (an object) is
 * sent as JSON. Answers JSON, or text with `raw`, or a Blob with `blob`
 * (downloads). Throws ApiError/AuthError.
 */
export async function api(path, { params, method = 'GET', raw = false, blob = false, body, signal } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v);
  }
  const headers = { Accept: raw || blob ? '*/*' : 'application/json' };
  const t = token.get();
  if (t) headers.Authorization = `Bearer ${t}`;
  const init = { method, headers, signal, credentials: 'omit', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(url, init);
  if (resp.status === 401) {
    let msg = 'sign-in required';
    try { msg = (await resp.json()).error || msg; } catch { /* not JSON */ }
    onUnauthorized(msg);
    throw new AuthError(msg);
  }
  if (!resp.ok) {
    let body = null;
    try { body = await resp.json(); } catch { /* not JSON */ }
    throw new ApiError(resp.status, (body && body.error) || `${resp.status} ${resp.statusText}`, body);
  }
  if (blob) return resp.blob();
  return raw ? resp.text() : resp.json();
}
