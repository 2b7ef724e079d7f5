// REST client: tokens in localStorage, refresh on token_expired, problem+json errors.

const KEY = "rtc.tokens";

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

export function loadTokens() {
  try {
    return JSON.parse(localStorage.getItem(KEY) || "null");
  } catch {
    return null;
  }
}

export function saveTokens(tokens) {
  if (tokens) localStorage.setItem(KEY, JSON.stringify(tokens));
  else localStorage.removeItem(KEY);
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
/** Called when the login is gone for good (refresh refused). */
export const hooks = { onAuthLost: () => {} };

export function refresh() {
  if (refreshing) return refreshing;
  refreshing = (async () => {
    const tokens = loadTokens();
    if (!tokens || !tokens.refresh_token) throw new ApiError(401, { title: "Not logged in" });
    const res = await fetch("/api/v1/auth/refresh", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ refresh_token: tokens.refresh_token }),
    });
    const body = await parse(res);
    if (!res.ok) {
      if (res.status === 401 || res.status === 400 || res.status === 422) {
        saveTokens(null);
        hooks.onAuthLost();
      }
      throw new ApiError(res.status, body);
    }
    saveTokens(body);
    return body;
  })();
  refreshing.finally(() => {
    refreshing = null;
  }).catch(() => {});
  return refreshing;
}

/** An access token valid for at least `marginS` more seconds. */
export async function freshToken(marginS = 30) {
  const tokens = loadTokens();
  if (!tokens) throw new ApiError(401, { title: "Not logged in" });
  const exp = jwtExp(tokens.access_token);
  if (exp && exp - Date.now() / 1000 < marginS) {
    return (await refresh()).access_token;
  }
  return tokens.access_token;
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
  const doFetch = async () => {
    const headers = { ...(opts.headers || {}) };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (!opts.noAuth) {
      const tokens = loadTokens();
      if (tokens) headers.authorization = `Bearer ${tokens.access_token}`;
    }
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
