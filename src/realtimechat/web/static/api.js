// REST client: the access token in memory only, the refresh token in an HttpOnly cookie
// (no script can read it), refresh on token_expired, problem+json errors.
//
// Cookie mode needs a secure context (https, or http on localhost/127.0.0.1): elsewhere
// the browser drops a Secure cookie, so the refresh token is kept in memory instead and
// a reload signs you out.

const SIGNED_IN = "rtc.signedIn"; // "a session cookie may exist": a hint, never a token
const COOKIE_MODE = window.isSecureContext;
const SESSION_HEADERS = { "x-rtc-session": "cookie", "x-rtc-csrf": "1" };

let access = null; // {access_token, expires_in}
let memoryRefresh = null; // the refresh token, outside a secure context only
const tokenListeners = new Set();
localStorage.removeItem("rtc.tokens"); // where earlier versions kept both tokens

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
    this.code = this.problem.code || "";
    this.title = this.problem.title || `HTTP ${status}`;
    this.detail = this.problem.detail || "";
  }
}

/** Whether this page has (or, after a reload, may have) a session. */
export function signedIn() {
  return !!access || localStorage.getItem(SIGNED_IN) === "1";
}

function setSession(tokens) {
  access = tokens ? { access_token: tokens.access_token, expires_in: tokens.expires_in } : null;
  if (!COOKIE_MODE) memoryRefresh = tokens ? tokens.refresh_token || memoryRefresh : null;
  if (tokens && COOKIE_MODE) localStorage.setItem(SIGNED_IN, "1");
  else localStorage.removeItem(SIGNED_IN);
  if (tokens) for (const fn of tokenListeners) fn(tokens.access_token);
}

/** Seconds since the epoch at which a JWT expires, or 0 when unreadable. */
export function jwtExp(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = part + "=".repeat((4 - (part.length % 4)) % 4);
    return Number(JSON.parse(atob(padded)).exp) || 0;
  } catch {
    return 0;
  }
}

let refreshing = null;
/** onAuthLost: the login is gone for good (refresh refused). */
export const hooks = { onAuthLost: () => {} };

/** Call `fn(accessToken)` after each login and refresh; returns the unsubscribe. */
export function onToken(fn) {
  tokenListeners.add(fn);
  return () => tokenListeners.delete(fn);
}

function sessionRequest(path, withToken) {
  if (COOKIE_MODE) return fetch(path, { method: "POST", headers: SESSION_HEADERS, credentials: "same-origin" });
  return fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ refresh_token: withToken }),
  });
}

export function refresh() {
  if (refreshing) return refreshing;
  refreshing = (async () => {
    if (!COOKIE_MODE && !memoryRefresh) throw new ApiError(401, { title: "Not logged in" });
    const res = await sessionRequest("/api/v1/auth/refresh", memoryRefresh);
    const body = await parse(res);
    if (!res.ok) {
      if (res.status === 401 || res.status === 400 || res.status === 403 || res.status === 422) {
        setSession(null);
        hooks.onAuthLost();
      }
      throw new ApiError(res.status, body);
    }
    setSession(body);
    return body;
  })();
  refreshing.finally(() => {
    refreshing = null;
  }).catch(() => {});
  return refreshing;
}

/** Log in; the refresh token goes to the HttpOnly cookie (cookie mode) or memory. */
export async function login(email, password) {
  const headers = { "content-type": "application/json", ...(COOKIE_MODE ? SESSION_HEADERS : {}) };
  const res = await fetch("/api/v1/auth/login", { method: "POST", headers, body: JSON.stringify({ email, password }) });
  const body = await parse(res);
  if (!res.ok) throw new ApiError(res.status, body);
  setSession(body);
  return body;
}

/** Sign this login out on the server (which clears the cookie) and forget the tokens. */
export async function logout() {
  const had = signedIn();
  const token = memoryRefresh;
  setSession(null);
  if (!had) return;
  try {
    if (COOKIE_MODE || token) await sessionRequest("/api/v1/auth/logout", token);
  } catch (err) {
    console.warn(err);
  }
}

/** Forget the tokens of this page (the server signed the login out already). */
export function forget() {
  setSession(null);
}

/** An access token valid for at least `marginS` more seconds. */
export async function freshToken(marginS = 30) {
  if (!access) return (await refresh()).access_token;
  const exp = jwtExp(access.access_token);
  if (exp && exp - Date.now() / 1000 < marginS) {
    return (await refresh()).access_token;
  }
  return access.access_token;
}

async function parse(res) {
  if (res.status === 204) return null;
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { title: text.slice(0, 200) };
  }
}

/**
 * One call. Returns {status, body, headers}. Throws ApiError for non-2xx,
 * TypeError for network failures.
 */
export async function api(method, path, body, opts = {}) {
  if (!opts.noAuth && !access && signedIn()) await refresh(); // after a reload: the cookie
  const doFetch = async () => {
    const headers = { ...(opts.headers || {}) };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (!opts.noAuth && access) headers.authorization = `Bearer ${access.access_token}`;
    return fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  };
  let res = await doFetch();
  let data = await parse(res);
  if (res.status === 401 && !opts.noAuth && data && data.code === "token_expired") {
    await refresh();
    res = await doFetch();
    data = await parse(res);
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return { status: res.status, body: data, headers: res.headers };
}

export const get = (path) => api("GET", path).then((r) => r.body);
export const post = (path, body) => api("POST", path, body ?? {}).then((r) => r.body);
