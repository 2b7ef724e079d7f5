// Live session: one WebSocket, resume by cursors, gap backfill, dedupe, reconnect,
// and the outbox of pending sends (kept in localStorage, retried with one client_msg_id).
// A simplified JavaScript mirror of realtimechat.sdk.live.
//
// Re-authentication: `ready` and `auth_ok` carry the token's `expires_at`; shortly before
// it the session refreshes the token, and every new token goes to the open socket in an
// `auth` frame. A socket closed 4401 `token_expired` reconnects with a fresh token; one
// closed 4401 `session_revoked` (signed out elsewhere) ends the session.

import { api, freshToken, refresh, onToken, ApiError } from "./api.js";

const BASE_MS = 500;
const CAP_MS = 15000;
const SEND_RETRY_MS = 8000;
const PERMANENT = new Set([400, 403, 404, 409, 413, 422]);

export class Live {
  /**
   * handlers: onState(state), onReady(frame), onEvent(ev), onTyping(frame),
   * onError(frame), onSent(pending, message), onSendFailed(pending, error), onPending(),
   * onRevoked()
   */
  constructor(userId, handlers) {
    this.userId = userId;
    this.h = handlers;
    this.ws = null;
    this.ready = false;
    this.closed = false;
    this.attempt = 0;
    this.timer = null;
    this.cursors = new Map(); // channel_id -> {seq, epoch}
    this.buffers = new Map(); // channel_id -> Map(seq -> event)
    this.backfilling = new Set();
    this.outKey = `rtc.pending.${userId}`;
    this.inFlight = new Map(); // client_msg_id -> time of last attempt
    this.sendTimer = setInterval(() => this.flush(), 2000);
    this.onOnline = () => {
      this.attempt = 0;
      this.state();
      this.reconnectSoon(0);
    };
    // Offline: drop the socket now rather than trust it; resume from the cursors when back.
    this.onOffline = () => {
      this.drop();
      this.state();
    };
    // A connection that stays silent past two heartbeats is dead, whatever TCP says.
    this.lastRx = Date.now();
    this.heartbeatMs = 0;
    this.watchdog = setInterval(() => {
      if (this.ws && this.ready && this.heartbeatMs && Date.now() - this.lastRx > 2 * this.heartbeatMs) {
        this.drop();
        this.reconnectSoon(0);
      }
    }, 2000);
    window.addEventListener("online", this.onOnline);
    window.addEventListener("offline", this.onOffline);
    this.renewTimer = null;
    this.offToken = onToken((token) => this.sendFrame({ type: "auth", token }));
  }

  /** Refresh the token a little before `expiresAt` (epoch s); the new one is sent as `auth`. */
  renewBefore(expiresAt) {
    clearTimeout(this.renewTimer);
    if (!expiresAt || this.closed) return;
    const left = expiresAt * 1000 - Date.now();
    const delay = Math.max(1000, left - Math.min(60000, left / 2));
    this.renewTimer = setTimeout(() => refresh().catch(() => {}), delay);
  }

  /** The login was signed out elsewhere: stop for good and tell the app once. */
  revoked() {
    if (this.closed) return;
    this.close();
    this.h.onRevoked();
  }

  // -- connection ----------------------------------------------------------------------------
  state() {
    let s;
    if (!navigator.onLine) s = "offline";
    else if (this.ready) s = "connected";
    else s = "reconnecting…";
    this.h.onState(s);
  }

  /** Forget the current socket without waiting for its close handshake. */
  drop() {
    const ws = this.ws;
    if (!ws) return;
    this.ws = null;
    this.ready = false;
    this.inFlight.clear();
    ws.onclose = null;
    ws.onmessage = null;
    try {
      ws.close();
    } catch {
      // already closing
    }
  }

  async connect() {
    if (this.closed) return;
    this.timer = null;
    this.state();
    let token;
    try {
      token = await freshToken(30);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return; // logged out
      return this.reconnectSoon();
    }
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    let ws;
    try {
      ws = new WebSocket(`${proto}//${location.host}/api/v1/ws`);
    } catch {
      return this.reconnectSoon();
    }
    this.ws = ws;
    ws.onopen = () => {
      const cursors = {};
      for (const [cid, c] of this.cursors) cursors[cid] = c.epoch ? { seq: c.seq, epoch: c.epoch } : c.seq;
      ws.send(JSON.stringify({ type: "auth", token, cursors }));
    };
    ws.onmessage = (msg) => {
      this.lastRx = Date.now();
      let frame;
      try {
        frame = JSON.parse(msg.data);
      } catch {
        return;
      }
      this.onFrame(frame);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.ready = false;
      this.inFlight.clear(); // unanswered sends go again on the next connection or over REST
      this.state();
      if (this.closed) return;
      if (ev.code === 4401 && ev.reason === "session_revoked") {
        this.revoked();
      } else if (ev.code === 4401) {
        // token_expired (not re-authenticated in time) or a refused token: a new one, again.
        refresh().then(() => this.reconnectSoon(0), () => this.reconnectSoon());
      } else if (ev.code === 1012) {
        this.reconnectSoon(this.goingAwayMs ?? undefined);
      } else if (ev.code === 1013) {
        this.reconnectSoon(0);
      } else {
        this.reconnectSoon();
      }
      this.goingAwayMs = null;
    };
  }

  /** Schedule a reconnect: `delay` ms, or exponential backoff with full jitter. */
  reconnectSoon(delay) {
    if (this.closed || this.timer || this.ws) return;
    if (!navigator.onLine) return this.state(); // the "online" event reconnects
    if (delay === undefined) {
      const ceiling = Math.min(CAP_MS, BASE_MS * 2 ** this.attempt);
      delay = Math.random() * ceiling;
      this.attempt += 1;
    }
    this.timer = setTimeout(() => this.connect(), delay);
    this.state();
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    clearTimeout(this.renewTimer);
    this.offToken();
    clearInterval(this.sendTimer);
    clearInterval(this.watchdog);
    window.removeEventListener("online", this.onOnline);
    window.removeEventListener("offline", this.onOffline);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000);
    }
    this.ready = false;
  }

  sendFrame(frame) {
    if (this.ws && this.ready && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  onFrame(frame) {
    switch (frame.type) {
      case "ready":
        this.heartbeatMs = frame.heartbeat_ms || 0;
        this.renewBefore(frame.expires_at);
        this.onReady(frame);
        break;
      case "auth_ok":
        this.renewBefore(frame.expires_at);
        break;
      case "event":
        delete frame.type;
        this.offer(frame);
        break;
      case "resync":
        this.backfill(frame.channel_id);
        break;
      case "send_ok":
        this.sent(frame.client_msg_id, frame.message);
        break;
      case "typing":
        this.h.onTyping(frame);
        break;
      case "going_away":
        this.goingAwayMs = frame.reconnect_after_ms;
        break;
      case "error":
        this.onErrorFrame(frame);
        break;
      default: // heartbeat, pong
        break;
    }
  }

  onReady(frame) {
    this.ready = true;
    this.attempt = 0;
    for (const ch of frame.channels || []) {
      const c = this.cursors.get(ch.id);
      if (!c) {
        // New to us: the server subscribed us from its last_seq; history comes over REST.
        this.cursors.set(ch.id, { seq: ch.last_seq, epoch: ch.epoch });
      } else if (c.epoch && ch.epoch && c.epoch !== ch.epoch) {
        // A new history: the server answers our old cursor with resync; keep what both share.
        c.seq = Math.min(c.seq, ch.last_seq);
        c.epoch = ch.epoch;
      }
    }
    this.h.onReady(frame);
    this.state();
    this.flush();
  }

  onErrorFrame(frame) {
    if (frame.code === "session_revoked") return this.revoked();
    if (frame.ref === "send" && frame.client_msg_id) {
      this.inFlight.delete(frame.client_msg_id);
      const retryable = ["rate_limited", "overloaded", "internal_error"].includes(frame.code);
      if (!retryable) {
        const p = this.pending().find((x) => x.client_msg_id === frame.client_msg_id);
        if (p) {
          this.unqueue(p.client_msg_id);
          this.h.onSendFailed(p, { title: frame.code, detail: frame.message });
        }
        return;
      }
    }
    if (frame.ref === "typing") return; // not worth a banner
    this.h.onError(frame);
  }

  // -- ordering and dedupe ------------------------------------------------------------------
  offer(ev) {
    const cid = ev.channel_id;
    let c = this.cursors.get(cid);
    if (!c) {
      // A channel we just joined: start right before this event.
      const ch = ev.data && ev.data.channel;
      c = { seq: ev.seq - 1, epoch: ch ? ch.epoch : null };
      this.cursors.set(cid, c);
    }
    if (ev.seq <= c.seq) return; // duplicate
    if (ev.seq > c.seq + 1) {
      let buf = this.buffers.get(cid);
      if (!buf) this.buffers.set(cid, (buf = new Map()));
      buf.set(ev.seq, ev);
      this.backfill(cid);
      return;
    }
    this.apply(cid, ev);
    this.drain(cid);
  }

  apply(cid, ev) {
    const c = this.cursors.get(cid);
    c.seq = ev.seq;
    if (ev.event === "channel.renamed" || ev.event === "channel.created") {
      const ch = ev.data && ev.data.channel;
      if (ch && ch.epoch) c.epoch = ch.epoch;
    }
    if (ev.event === "message.created" && ev.data && ev.data.sender_id === this.userId) {
      this.sent(ev.data.client_msg_id, ev.data, true);
    }
    try {
      this.h.onEvent(ev);
    } catch (err) {
      console.error(err);
    }
  }

  drain(cid) {
    const buf = this.buffers.get(cid);
    if (!buf) return;
    const c = this.cursors.get(cid);
    for (const seq of [...buf.keys()]) if (seq <= c.seq) buf.delete(seq);
    while (buf.has(c.seq + 1)) {
      const ev = buf.get(c.seq + 1);
      buf.delete(c.seq + 1);
      this.apply(cid, ev);
    }
    if (buf.size === 0) this.buffers.delete(cid);
  }

  /** Page GET /channels/{id}/events?after_seq= from our cursor until has_more is false. */
  async backfill(cid) {
    if (this.backfilling.has(cid)) return;
    this.backfilling.add(cid);
    try {
      for (;;) {
        const c = this.cursors.get(cid) || { seq: 0, epoch: null };
        if (!this.cursors.has(cid)) this.cursors.set(cid, c);
        const page = (
          await api("GET", `/api/v1/channels/${encodeURIComponent(cid)}/events?after_seq=${c.seq}&limit=100`)
        ).body;
        for (const ev of page.events) {
          if (ev.seq === c.seq + 1) this.apply(cid, ev);
        }
        this.drain(cid);
        if (!page.has_more || page.events.length === 0) break;
      }
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        this.cursors.delete(cid);
        this.buffers.delete(cid);
      } else {
        setTimeout(() => this.backfill(cid), 2000);
      }
    } finally {
      this.backfilling.delete(cid);
    }
  }

  // -- outbox -------------------------------------------------------------------------------
  pending() {
    try {
      return JSON.parse(localStorage.getItem(this.outKey) || "[]");
    } catch {
      return [];
    }
  }

  savePending(list) {
    localStorage.setItem(this.outKey, JSON.stringify(list));
  }

  unqueue(cmid) {
    this.savePending(this.pending().filter((p) => p.client_msg_id !== cmid));
    this.inFlight.delete(cmid);
  }

  /** Queue a message; it shows as pending at once and is retried until stored. */
  send(channelId, body) {
    const p = {
      client_msg_id: crypto.randomUUID(),
      channel_id: channelId,
      body,
      sender_id: this.userId,
      created_at: new Date().toISOString(),
    };
    this.savePending([...this.pending(), p]);
    this.h.onPending();
    this.flush();
    return p;
  }

  sent(cmid, message, fromEvent = false) {
    if (!cmid) return;
    const p = this.pending().find((x) => x.client_msg_id === cmid);
    if (!p) return;
    this.unqueue(cmid);
    if (!fromEvent || message) this.h.onSent(p, message);
  }

  flush() {
    const now = Date.now();
    for (const p of this.pending()) {
      const last = this.inFlight.get(p.client_msg_id);
      if (last && now - last < SEND_RETRY_MS) continue;
      this.inFlight.set(p.client_msg_id, now);
      const frame = { type: "send", channel_id: p.channel_id, client_msg_id: p.client_msg_id, body: p.body };
      if (!this.sendFrame(frame)) this.sendRest(p);
    }
  }

  async sendRest(p) {
    if (!navigator.onLine) {
      this.inFlight.delete(p.client_msg_id);
      return;
    }
    try {
      const res = await api("POST", "/api/v1/messages", {
        channel_id: p.channel_id,
        body: p.body,
        client_msg_id: p.client_msg_id,
      });
      this.sent(p.client_msg_id, res.body);
    } catch (err) {
      if (err instanceof ApiError && PERMANENT.has(err.status)) {
        this.unqueue(p.client_msg_id);
        this.h.onSendFailed(p, err);
      }
      // otherwise: the interval retries it with the same client_msg_id
    }
  }
}
