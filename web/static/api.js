// The client of flywheel's public /v1 API. The key lives in sessionStorage
// only: never in a URL, a cookie or lasting storage, so it is gone when the
// tab closes.

const STORE = 'flywheel.key';

export function savedKey() {
  return sessionStorage.getItem(STORE);
}

export function saveKey(key) {
  sessionStorage.setItem(STORE, key);
}

export function forgetKey() {
  sessionStorage.removeItem(STORE);
}

// ApiError is a non-2xx answer (or no answer): the contract's error object
// with the HTTP status.
export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || 'the server answered ' + status);
    this.status = status;
    this.code = e.code || 'internal';
    this.field = e.field || '';
    // details lists every problem a validation found; at least this one.
    this.details = Array.isArray(e.details) && e.details.length ? e.details : [{code: this.code, message: this.message, field: this.field}];
  }
}

let onUnauthenticated = () => {};

// whenSignedOut sets what happens when the key stops working (401).
export function whenSignedOut(fn) {
  onUnauthenticated = fn;
}

// api calls the API with the saved key (or key, when given: sign-in checks
// a key before saving it). body is sent as JSON when defined.
export async function api(method, path, body, key) {
  const headers = {Authorization: 'Bearer ' + (key || savedKey() || '')};
  const init = {method, headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer'};
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, {error: {code: 'unavailable', message: 'the server cannot be reached (' + err.message + ')'}});
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (err) {
    data = null;
  }
  if (!res.ok) {
    const e = new ApiError(res.status, data);
    if (res.status === 401 && !key) onUnauthenticated(e);
    throw e;
  }
  return data;
}

// path joins URL path segments, escaping each.
export function path(...parts) {
  return '/v1/' + parts.map((p) => encodeURIComponent(p)).join('/');
}

// query makes "?a=1&b=2" from the defined, non-empty values.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? '?' + s : '';
}

// allPages follows next_cursor and returns every item (at most max).
export async function allPages(base, params, max) {
  const items = [];
  let cursor = '';
  for (;;) {
    const page = await api('GET', base + query({...params, limit: 500, cursor}));
    items.push(...page.items);
    if (!page.next_cursor || items.length >= (max || 5000)) return items;
    cursor = page.next_cursor;
  }
}
