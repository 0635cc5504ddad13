// The API client: JSON over fetch with the stored key as `Authorization: Bearer`, and the alert
// WebSocket URL (browsers cannot set headers on a WebSocket, so the key goes in `access_token`).

const KEY_STORAGE = 'vigil.apiKey';

export function getKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) ?? '';
  } catch {
    return ''; // storage disabled: work without a key
  }
}

export function setKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    /* storage disabled: the key lasts for this page only */
  }
  sessionKey = key;
}

let sessionKey = getKey();
const unauthorizedListeners = new Set();

/** Called with the error message whenever the API answers 401 (no key, unknown or revoked key). */
export function onUnauthorized(fn) {
  unauthorizedListeners.add(fn);
  return () => unauthorizedListeners.delete(fn);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function authHeaders() {
  return sessionKey ? { authorization: `Bearer ${sessionKey}` } : {};
}

/** Query string from an object; arrays are comma-joined, empty values left out. */
export function query(params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    q.set(k, Array.isArray(v) ? v.join(',') : String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** GET/POST JSON; throws ApiError with the API's error code and message on a non-2xx answer. */
export async function api(path, { method = 'GET', body, params, signal } = {}) {
  const headers = { accept: 'application/json', ...authHeaders() };
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await fetch(`${path}${query(params)}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  } catch (err) {
    if (err?.name === 'AbortError') throw err;
    throw new ApiError(0, 'NETWORK', `cannot reach the service (${err?.message ?? err})`);
  }
  const text = await res.text();
  let data;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    data = undefined;
  }
  if (!res.ok) {
    const code = data?.error?.code ?? `HTTP_${res.status}`;
    const message = data?.error?.message ?? `${method} ${path}: HTTP ${res.status}`;
    if (res.status === 401) for (const fn of unauthorizedListeners) fn(message);
    throw new ApiError(res.status, code, message);
  }
  return data;
}

/** ws(s)://<this host>/api/alerts?<filters>[&access_token=<key>] */
export function alertsUrl(params) {
  const withKey = sessionKey ? { ...params, access_token: sessionKey } : params;
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/api/alerts${query(withKey)}`;
}

/** Whether the error means "this endpoint is not there (yet)": show the page without that part. */
export const isMissing = (err) => err instanceof ApiError && (err.status === 404 || err.status === 405);
