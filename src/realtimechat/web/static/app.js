// RealTimeChat browser client: auth, sidebar, message view, live delivery.
import { api, get, post, login as logIn, logout as logOut, forget, signedIn, hooks, ApiError } from "./api.js";
import { Live } from "./live.js";

const app = document.getElementById("app");

const S = {
  me: null,
  teams: [],
  channels: new Map(), // id -> channel view
  teamMembers: new Map(), // team_id -> [member]
  names: new Map(), // user_id -> display_name
  current: null,
  msgs: new Map(), // channel_id -> {byId: Map, hasMore, loading}
  typing: new Map(), // channel_id -> Map(user_id -> timer)
  live: null,
  editing: null, // {id, el, conflict}
  lastTypingSent: 0,
};

// -- tiny DOM helper ---------------------------------------------------------------------------
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else if (k in el && !k.includes("-") && k !== "list") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let uid = 0;
function field(label, input) {
  const id = input.id || `f${++uid}`;
  input.id = id;
  return h("div", { className: "field" }, h("label", { htmlFor: id }, label), input);
}

// -- error banner ------------------------------------------------------------------------------
const banner = h("div", { className: "banners", "data-testid": "error-banners" });

function showError(title, detail) {
  const item = h(
    "div",
    { className: "banner", role: "alert", "data-testid": "error-banner" },
    h("strong", { text: title || "Error" }),
    detail ? h("span", { text: ` ${detail}` }) : null,
    h("button", {
      type: "button",
      className: "dismiss",
      "aria-label": "Dismiss",
      "data-testid": "error-dismiss",
      text: "×",
      onclick: () => item.remove(),
    }),
  );
  banner.append(item);
}

/** A confirmation that is not an error (role=status: announced, not alarming). */
function showNotice(text) {
  const item = h(
    "div",
    { className: "banner notice", role: "status", "data-testid": "notice" },
    h("span", { text }),
    h("button", {
      type: "button",
      className: "dismiss",
      "aria-label": "Dismiss",
      text: "×",
      onclick: () => item.remove(),
    }),
  );
  banner.append(item);
}

function report(err) {
  if (err instanceof ApiError) showError(err.title, err.detail);
  else if (err instanceof TypeError) showError("Network error", "The server could not be reached.");
  else showError("Error", String(err && err.message ? err.message : err));
  console.error(err);
}

/** Run an async action from a form or button, showing any error in the banner. */
function action(fn) {
  return async (e) => {
    if (e && e.preventDefault) e.preventDefault();
    try {
      await fn(e);
    } catch (err) {
      report(err);
    }
  };
}

// -- auth screen ----------------------------------------------------------------------------
function renderAuth() {
  stopSession();
  app.replaceChildren();
  const email = h("input", { type: "email", required: true, autocomplete: "username", "data-testid": "login-email" });
  const password = h("input", {
    type: "password",
    required: true,
    autocomplete: "current-password",
    "data-testid": "login-password",
  });
  const rEmail = h("input", { type: "email", required: true, autocomplete: "email", "data-testid": "register-email" });
  const rName = h("input", { type: "text", required: true, maxLength: 100, "data-testid": "register-display-name" });
  const rPassword = h("input", {
    type: "password",
    required: true,
    minLength: 8,
    autocomplete: "new-password",
    "data-testid": "register-password",
  });
  const login = async (em, pw) => {
    await logIn(em, pw);
    await startSession();
  };
  app.append(
    h("h1", { text: "RealTimeChat" }),
    banner,
    h(
      "div",
      { className: "auth" },
      h(
        "form",
        { "aria-labelledby": "login-h", "data-testid": "login-form", onsubmit: action(() => login(email.value, password.value)) },
        h("h2", { id: "login-h", text: "Log in" }),
        field("E-mail", email),
        field("Password", password),
        h("button", { type: "submit", "data-testid": "login-submit", text: "Log in" }),
      ),
      h(
        "form",
        {
          "aria-labelledby": "register-h",
          "data-testid": "register-form",
          onsubmit: action(async () => {
            await api(
              "POST",
              "/api/v1/auth/register",
              { email: rEmail.value, display_name: rName.value, password: rPassword.value },
              { noAuth: true },
            );
            await login(rEmail.value, rPassword.value);
          }),
        },
        h("h2", { id: "register-h", text: "Register" }),
        field("E-mail", rEmail),
        field("Display name", rName),
        field("Password (8+ characters)", rPassword),
        h("button", { type: "submit", "data-testid": "register-submit", text: "Register" }),
      ),
    ),
  );
  email.focus();
}

async function logout() {
  stopSession();
  await logOut();
  renderAuth();
}

function stopSession() {
  if (S.live) S.live.close();
  S.live = null;
  S.me = null;
  S.teams = [];
  S.channels.clear();
  S.teamMembers.clear();
  S.names.clear();
  S.msgs.clear();
  S.current = null;
  S.editing = null;
}

hooks.onAuthLost = () => {
  if (S.me) {
    renderAuth();
    showError("Signed out", "Your session ended; please log in again.");
  }
};

function onRevoked() {
  forget();
  renderAuth();
  showError("Signed out", "This session was signed out from another device or tab; please log in again.");
}

// -- main layout ------------------------------------------------------------------------------
const ui = {};

function renderShell() {
  app.replaceChildren();
  ui.conn = h("span", { className: "conn", "data-testid": "connection-state", role: "status", text: "offline" });
  ui.sidebar = h("nav", { className: "sidebar", "aria-label": "Teams and channels" });
  ui.main = h("section", { className: "main", "aria-label": "Messages" });
  app.append(
    h(
      "header",
      { className: "top" },
      h("h1", { text: "RealTimeChat" }),
      ui.conn,
      h("span", { className: "me", "data-testid": "me", text: S.me.display_name }),
      h("button", { type: "button", "data-testid": "logout", text: "Log out", onclick: action(logout) }),
    ),
    banner,
    h("div", { className: "layout" }, ui.sidebar, ui.main),
  );
  buildSidebar();
  buildMain();
}

function setConn(state) {
  if (!ui.conn) return;
  ui.conn.textContent = state;
  ui.conn.dataset.state = state;
}

// -- sidebar -----------------------------------------------------------------------------------
function buildSidebar() {
  const teamName = h("input", { type: "text", required: true, maxLength: 100, "data-testid": "new-team-name" });
  ui.teams = h("div", { className: "teams", "data-testid": "team-list" });
  ui.dms = h("ul", { className: "channels", "data-testid": "dm-list" });
  ui.teamSections = new Map();
  ui.sidebar.replaceChildren(
    ui.teams,
    h("section", { className: "dms" }, h("h2", { text: "Direct messages" }), ui.dms),
    h(
      "form",
      {
        className: "inline",
        "data-testid": "new-team-form",
        onsubmit: action(async () => {
          const team = await post("/api/v1/teams", { name: teamName.value });
          teamName.value = "";
          S.teams.push(team);
          await loadTeam(team);
          renderSidebar();
        }),
      },
      field("New team", teamName),
      h("button", { type: "submit", "data-testid": "new-team-submit", text: "Create team" }),
    ),
  );
}

function teamSection(team) {
  let sec = ui.teamSections.get(team.id);
  if (sec) return sec;
  const chName = h("input", { type: "text", required: true, maxLength: 100, "data-testid": "new-channel-name" });
  const chPrivate = h("input", { type: "checkbox", "data-testid": "new-channel-private" });
  const email = h("input", { type: "email", required: true, "data-testid": "add-member-email" });
  const dmSelect = h("select", { "data-testid": "dm-user" });
  const ul = h("ul", { className: "channels", "data-testid": "channel-list" });
  const el = h(
    "section",
    { className: "team", "data-testid": "team-item", "data-team-id": team.id },
    h("h2", { text: team.name }),
    ul,
    h(
      "details",
      {},
      h("summary", { text: "Team actions" }),
      h(
        "form",
        {
          className: "inline",
          "data-testid": "new-channel-form",
          onsubmit: action(async () => {
            const ch = await post(`/api/v1/teams/${team.id}/channels`, { name: chName.value, private: chPrivate.checked });
            chName.value = "";
            chPrivate.checked = false;
            upsertChannel({ ...ch, is_member: true, unread_count: 0 });
            renderSidebar();
            openChannel(ch.id);
          }),
        },
        field("New channel", chName),
        h("label", { className: "check" }, chPrivate, " Private"),
        h("button", { type: "submit", "data-testid": "new-channel-submit", text: "Create channel" }),
      ),
      h(
        "form",
        {
          className: "inline",
          "data-testid": "add-member-form",
          onsubmit: action(async () => {
            const address = email.value;
            const res = await api("POST", `/api/v1/teams/${team.id}/members`, { email: address });
            email.value = "";
            if (res.status === 202) {
              // An invitation: whether the address has an account is not revealed.
              showNotice(`Invitation sent to ${(res.body && res.body.email) || address}`);
              return;
            }
            await loadTeamMembers(team.id);
            renderSidebar();
          }),
        },
        field("Add member by e-mail", email),
        h("button", { type: "submit", "data-testid": "add-member-submit", text: "Add" }),
      ),
      h(
        "form",
        {
          className: "inline",
          "data-testid": "new-dm-form",
          onsubmit: action(async () => {
            if (!dmSelect.value) return;
            const ch = await post("/api/v1/dms", { user_id: dmSelect.value });
            upsertChannel({ ...ch, is_member: true, member_ids: ch.member_ids || [S.me.id, dmSelect.value] });
            renderSidebar();
            openChannel(ch.id);
          }),
        },
        field("Message a member", dmSelect),
        h("button", { type: "submit", "data-testid": "new-dm-submit", text: "Start DM" }),
      ),
    ),
  );
  sec = { el, ul, dmSelect };
  ui.teamSections.set(team.id, sec);
  return sec;
}

function channelLabel(ch) {
  if (ch.kind === "dm") {
    const others = (ch.member_ids || []).filter((id) => id !== S.me.id);
    const names = others.map((id) => S.names.get(id) || "someone");
    return names.length ? names.join(", ") : "Just you";
  }
  return (ch.kind === "private" ? "🔒 " : "# ") + ch.name;
}

function channelItem(ch) {
  const unread = ch.is_member && ch.unread_count > 0 && ch.id !== S.current;
  const li = h("li", { "data-testid": "channel-item", "data-channel-id": ch.id, className: ch.id === S.current ? "current" : "" });
  if (ch.is_member || ch.kind === "dm") {
    li.append(
      h(
        "button",
        {
          type: "button",
          className: "open",
          "aria-current": ch.id === S.current ? "page" : undefined,
          onclick: () => openChannel(ch.id),
        },
        h("span", { className: "name", text: channelLabel(ch) }),
        unread
          ? h("span", { className: "badge", "data-testid": "unread", "aria-label": `${ch.unread_count} unread`, text: String(ch.unread_count) })
          : null,
      ),
    );
  } else {
    li.append(
      h("span", { className: "name muted", text: channelLabel(ch) }),
      h("button", {
        type: "button",
        className: "join",
        "data-testid": "join-channel",
        text: "Join",
        "aria-label": `Join ${ch.name}`,
        onclick: action(async () => {
          await post(`/api/v1/channels/${ch.id}/members`, { user_id: S.me.id });
          ch.is_member = true;
          ch.unread_count = 0;
          renderSidebar();
          openChannel(ch.id);
        }),
      }),
    );
  }
  return li;
}

function renderSidebar() {
  if (!ui.teams) return;
  const focusedId = document.activeElement && document.activeElement.closest && document.activeElement.closest("[data-channel-id]");
  const focusKey = focusedId ? focusedId.dataset.channelId : null;
  const sections = [];
  for (const team of S.teams) {
    const sec = teamSection(team);
    const chans = [...S.channels.values()]
      .filter((c) => c.team_id === team.id && c.kind !== "dm")
      .sort((a, b) => a.name.localeCompare(b.name));
    sec.ul.replaceChildren(...chans.map(channelItem));
    const members = (S.teamMembers.get(team.id) || []).filter((m) => m.user_id !== S.me.id);
    const selected = sec.dmSelect.value;
    sec.dmSelect.replaceChildren(
      h("option", { value: "", text: members.length ? "Choose…" : "No other members" }),
      ...members.map((m) => h("option", { value: m.user_id, text: m.display_name })),
    );
    sec.dmSelect.value = selected;
    sections.push(sec.el);
  }
  ui.teams.replaceChildren(...sections);
  const dms = [...S.channels.values()].filter((c) => c.kind === "dm");
  ui.dms.replaceChildren(...dms.map(channelItem));
  if (focusKey) {
    const again = ui.sidebar.querySelector(`[data-channel-id="${CSS.escape(focusKey)}"] button`);
    if (again) again.focus();
  }
}

function upsertChannel(view) {
  const old = S.channels.get(view.id) || {};
  S.channels.set(view.id, { unread_count: 0, ...old, ...view });
}

// -- loading -----------------------------------------------------------------------------------
async function loadTeamMembers(teamId) {
  const { members } = await get(`/api/v1/teams/${teamId}/members`);
  S.teamMembers.set(teamId, members);
  for (const m of members) S.names.set(m.user_id, m.display_name);
}

async function loadTeam(team) {
  const [{ channels }] = await Promise.all([get(`/api/v1/teams/${team.id}/channels`), loadTeamMembers(team.id)]);
  for (const ch of channels) upsertChannel(ch);
}

async function loadAll() {
  const [{ teams }, { channels }] = await Promise.all([get("/api/v1/teams"), get("/api/v1/channels")]);
  S.teams = teams;
  for (const ch of channels) upsertChannel({ ...ch, is_member: true });
  await Promise.all(teams.map(loadTeam));
}

async function startSession() {
  try {
    S.me = await get("/api/v1/users/me");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      forget();
      renderAuth();
      return;
    }
    throw err;
  }
  S.names.set(S.me.id, S.me.display_name);
  renderShell();
  try {
    await loadAll();
  } catch (err) {
    report(err);
  }
  renderSidebar();
  S.live = new Live(S.me.id, {
    onState: setConn,
    onReady,
    onEvent,
    onTyping,
    onError: (f) => showError(f.title || f.code || "Error", f.message || f.detail || ""),
    onSent: (p, message) => {
      if (message) storeMessage(message);
      if (p.channel_id === S.current) renderMessages();
    },
    onSendFailed: (p, err) => {
      showError(`Message not sent: ${err.title || "error"}`, `${err.detail || ""} — "${p.body.slice(0, 80)}"`);
      if (p.channel_id === S.current) renderMessages();
    },
    onPending: () => renderMessages(),
    onRevoked,
  });
  S.live.connect();
  const first = [...S.channels.values()].find((c) => c.is_member);
  if (first) openChannel(first.id);
  else renderMessages();
}

function onReady(frame) {
  let changed = false;
  for (const ch of frame.channels || []) {
    const known = S.channels.get(ch.id);
    if (!known) {
      upsertChannel({ ...ch, is_member: true, private: ch.kind !== "public" });
      changed = true;
      if (ch.kind === "dm") {
        get(`/api/v1/channels/${ch.id}`)
          .then((v) => {
            upsertChannel(v);
            renderSidebar();
          })
          .catch(() => {});
      }
    } else {
      known.last_seq = Math.max(known.last_seq || 0, ch.last_seq);
    }
  }
  if (changed) renderSidebar();
  // After a reconnect, refresh the open channel's newest page in case a resync skipped events.
  if (S.current) markRead(S.current);
}

// -- live events -----------------------------------------------------------------------------
function storeMessage(m) {
  const store = S.msgs.get(m.channel_id);
  if (!store) return;
  const old = store.byId.get(m.id);
  if (old && old.version > m.version) return;
  store.byId.set(m.id, m);
}

function onEvent(ev) {
  const cid = ev.channel_id;
  const ch = S.channels.get(cid);
  const d = ev.data || {};
  if (ch) ch.last_seq = Math.max(ch.last_seq || 0, ev.seq);
  let sidebar = false;
  switch (ev.event) {
    case "message.created":
    case "message.updated":
    case "message.deleted":
      storeMessage(d);
      if (ev.event === "message.created" && d.sender_id !== S.me.id && ch) {
        if (cid === S.current && document.visibilityState === "visible") scheduleRead(cid);
        else {
          ch.unread_count = (ch.unread_count || 0) + 1;
          sidebar = true;
        }
      }
      if (ev.event === "message.created") clearTyping(cid, d.sender_id);
      break;
    case "member.joined":
      if (d.display_name) S.names.set(d.user_id, d.display_name);
      if (d.user_id === S.me.id && d.channel) {
        upsertChannel({ ...d.channel, is_member: true });
        sidebar = true;
      }
      break;
    case "member.left":
      if (d.user_id === S.me.id && ch) {
        if (ch.kind === "public") ch.is_member = false;
        else S.channels.delete(cid);
        if (S.current === cid) S.current = null;
        sidebar = true;
      }
      break;
    case "channel.created":
      if (d.channel) {
        upsertChannel({
          ...d.channel,
          is_member: (d.member_ids || []).includes(S.me.id),
          member_ids: d.member_ids,
        });
        sidebar = true;
      }
      break;
    case "channel.renamed":
      if (d.channel) {
        upsertChannel({ ...d.channel, last_seq: Math.max(d.channel.last_seq || 0, ev.seq) });
        sidebar = true;
        if (cid === S.current) renderHeader();
      }
      break;
    default:
      break;
  }
  if (sidebar) renderSidebar();
  if (cid === S.current) renderMessages();
}

function onTyping(frame) {
  const cid = frame.channel_id;
  if (!S.typing.has(cid)) S.typing.set(cid, new Map());
  const users = S.typing.get(cid);
  clearTimeout(users.get(frame.user_id));
  users.set(
    frame.user_id,
    setTimeout(() => clearTyping(cid, frame.user_id), 3000),
  );
  renderTyping();
}

function clearTyping(cid, userId) {
  const users = S.typing.get(cid);
  if (!users || !users.has(userId)) return;
  clearTimeout(users.get(userId));
  users.delete(userId);
  renderTyping();
}

function renderTyping() {
  if (!ui.typing) return;
  const users = S.typing.get(S.current);
  const names = users ? [...users.keys()].map((id) => S.names.get(id) || "Someone") : [];
  ui.typing.textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} typing…` : "";
}

// -- message view ------------------------------------------------------------------------------
function buildMain() {
  ui.header = h("h2", { className: "chan-title", "data-testid": "channel-title", text: "" });
  ui.older = h("button", {
    type: "button",
    className: "older",
    "data-testid": "load-older",
    text: "Load older messages",
    onclick: action(() => loadOlder()),
  });
  ui.list = h("ol", { className: "messages", "data-testid": "message-list", "aria-label": "Messages" });
  ui.scroller = h("div", { className: "scroller", tabIndex: 0 }, ui.older, ui.list);
  ui.scroller.addEventListener("scroll", () => {
    if (ui.scroller.scrollTop < 40) loadOlder().catch(report);
  });
  ui.typing = h("div", { className: "typing", "data-testid": "typing", "aria-live": "polite" });
  ui.composer = h("textarea", {
    id: "composer",
    rows: 2,
    "data-testid": "composer",
    placeholder: "Write a message — Enter sends, Shift+Enter for a new line",
  });
  ui.composer.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      sendComposer();
    }
  });
  ui.composer.addEventListener("input", () => {
    const now = Date.now();
    if (S.current && S.live && now - S.lastTypingSent > 3000 && ui.composer.value) {
      if (S.live.sendFrame({ type: "typing", channel_id: S.current })) S.lastTypingSent = now;
    }
  });
  ui.form = h(
    "form",
    {
      className: "composer",
      onsubmit: (e) => {
        e.preventDefault();
        sendComposer();
      },
    },
    h("label", { htmlFor: "composer", className: "sr-only", text: "Message" }),
    ui.composer,
    h("button", { type: "submit", "data-testid": "send", text: "Send" }),
  );
  ui.main.replaceChildren(ui.header, ui.scroller, ui.typing, ui.form);
}

function sendComposer() {
  const body = ui.composer.value;
  if (!body.trim() || !S.current || !S.live) return;
  S.live.send(S.current, body);
  ui.composer.value = "";
  S.lastTypingSent = 0;
  stickToBottom = true;
}

function renderHeader() {
  const ch = S.channels.get(S.current);
  ui.header.textContent = ch ? channelLabel(ch) : "No channel selected";
  ui.form.hidden = !ch;
  ui.scroller.hidden = !ch;
}

async function openChannel(cid) {
  S.current = cid;
  S.editing = null;
  renderHeader();
  renderSidebar();
  renderTyping();
  stickToBottom = true;
  renderMessages();
  const ch = S.channels.get(cid);
  try {
    const { members } = await get(`/api/v1/channels/${cid}/members`);
    for (const m of members) S.names.set(m.user_id, m.display_name);
    if (ch && ch.kind === "dm" && !(ch.member_ids || []).length) {
      ch.member_ids = members.map((m) => m.user_id);
      renderSidebar();
      renderHeader();
    }
  } catch (err) {
    report(err);
  }
  if (!S.msgs.has(cid)) {
    S.msgs.set(cid, { byId: new Map(), hasMore: true, loading: false });
    await loadOlder(true);
  }
  if (S.current === cid) {
    renderMessages();
    markRead(cid);
    ui.composer.focus();
  }
}

async function loadOlder(initial = false) {
  const cid = S.current;
  const store = cid && S.msgs.get(cid);
  if (!store || store.loading || !store.hasMore) return;
  store.loading = true;
  try {
    const seqs = [...store.byId.values()].map((m) => m.seq);
    const before = seqs.length ? Math.min(...seqs) : null;
    const q = before ? `?before_seq=${before}&limit=50` : "?limit=50";
    const page = await get(`/api/v1/channels/${cid}/messages${q}`);
    for (const m of page.messages) if (!store.byId.has(m.id)) store.byId.set(m.id, m);
    store.hasMore = page.has_more;
    if (S.current === cid) {
      const fromBottom = ui.scroller.scrollHeight - ui.scroller.scrollTop;
      renderMessages(true);
      if (!initial) ui.scroller.scrollTop = ui.scroller.scrollHeight - fromBottom;
    }
  } finally {
    store.loading = false;
  }
}

let readTimer = null;
function scheduleRead(cid) {
  clearTimeout(readTimer);
  readTimer = setTimeout(() => markRead(cid), 500);
}

async function markRead(cid) {
  const ch = S.channels.get(cid);
  if (!ch) return;
  const store = S.msgs.get(cid);
  const cursor = S.live && S.live.cursors.get(cid);
  let seq = Math.max(ch.last_seq || 0, cursor ? cursor.seq : 0);
  if (store) for (const m of store.byId.values()) seq = Math.max(seq, m.seq);
  if (!seq) return;
  try {
    await post(`/api/v1/channels/${cid}/read`, { seq });
    ch.unread_count = 0;
    renderSidebar();
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404)) report(err);
  }
}

let stickToBottom = true;

function fmtTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
}

function messageItem(m, pending) {
  const mine = m.sender_id === S.me.id;
  const deleted = !!m.deleted_at;
  const li = h("li", {
    className: `msg${pending ? " pending" : ""}${deleted ? " deleted" : ""}`,
    "data-testid": "message",
    "data-seq": pending ? undefined : String(m.seq),
    "data-client-msg-id": m.client_msg_id || undefined,
    "data-message-id": m.id || undefined,
    "data-state": pending ? "pending" : "sent",
  });
  li.append(
    h(
      "div",
      { className: "meta" },
      h("span", { className: "sender", "data-testid": "message-sender", text: S.names.get(m.sender_id) || "Unknown" }),
      h("time", { dateTime: m.created_at, text: fmtTime(m.created_at) }),
      pending ? h("span", { className: "tag", text: "sending…" }) : null,
      m.edited_at && !deleted ? h("span", { className: "tag", "data-testid": "edited", text: "edited" }) : null,
    ),
  );
  if (deleted) {
    li.append(h("p", { className: "body muted", "data-testid": "message-body", text: "message deleted" }));
    return li;
  }
  if (S.editing && S.editing.id === m.id) {
    li.append(editor(m));
    return li;
  }
  li.append(h("p", { className: "body", "data-testid": "message-body", text: m.body }));
  if (mine && !pending) {
    li.append(
      h(
        "div",
        { className: "actions" },
        h("button", {
          type: "button",
          "data-testid": "edit-message",
          text: "Edit",
          onclick: () => {
            const el = h("textarea", { rows: 2, "data-testid": "edit-body", "aria-label": "Edit message" });
            el.value = m.body;
            // The version the user started from: a change made meanwhile (another
            // device, another tab) must answer 412, not be overwritten silently.
            S.editing = { id: m.id, el, conflict: null, version: m.version };
            renderMessages();
            el.focus();
          },
        }),
        h("button", {
          type: "button",
          "data-testid": "delete-message",
          text: "Delete",
          onclick: action(() => deleteMessage(m)),
        }),
      ),
    );
  }
  return li;
}

function editor(m) {
  const ed = S.editing;
  const save = action(async () => {
    try {
      const res = await api("PUT", `/api/v1/messages/${m.id}`, { body: ed.el.value }, { headers: { "If-Match": `"${ed.version}"` } });
      storeMessage(res.body);
      S.editing = null;
      renderMessages();
    } catch (err) {
      if (err instanceof ApiError && err.status === 412) {
        const newer = await get(`/api/v1/messages/${m.id}`);
        storeMessage(newer);
        ed.conflict = newer;
        ed.version = newer.version; // seen now: saving again overwrites it knowingly
        renderMessages();
        return;
      }
      throw err;
    }
  });
  ed.el.onkeydown = (e) => {
    if (e.key === "Enter" && !e.shiftKey) save(e);
    else if (e.key === "Escape") {
      S.editing = null;
      renderMessages();
    }
  };
  return h(
    "form",
    { className: "edit", onsubmit: save },
    ed.conflict
      ? h(
          "p",
          { className: "conflict", role: "alert", "data-testid": "edit-conflict" },
          ed.conflict.deleted_at
            ? "This message was deleted meanwhile."
            : `This message was changed meanwhile. Newer text: “${ed.conflict.body}”. Save again to overwrite it.`,
        )
      : null,
    ed.el,
    h("button", { type: "submit", "data-testid": "edit-save", text: "Save" }),
    h("button", {
      type: "button",
      text: "Cancel",
      onclick: () => {
        S.editing = null;
        renderMessages();
      },
    }),
  );
}

async function deleteMessage(m) {
  if (!window.confirm("Delete this message?")) return;
  const cur = S.msgs.get(m.channel_id).byId.get(m.id) || m;
  try {
    const res = await api("DELETE", `/api/v1/messages/${m.id}`, undefined, { headers: { "If-Match": `"${cur.version}"` } });
    storeMessage(res.body);
    renderMessages();
  } catch (err) {
    if (err instanceof ApiError && err.status === 412) {
      const newer = await get(`/api/v1/messages/${m.id}`);
      storeMessage(newer);
      renderMessages();
      showError("Message changed meanwhile", newer.deleted_at ? "It was already deleted." : `Newer text: “${newer.body}”. Delete again if you still want to.`);
      return;
    }
    throw err;
  }
}

function renderMessages(keepScroll = false) {
  if (!ui.list) return;
  const cid = S.current;
  const store = cid && S.msgs.get(cid);
  if (!cid) {
    renderHeader();
    ui.list.replaceChildren(h("li", { className: "empty", text: "Pick or create a channel." }));
    ui.older.hidden = true;
    return;
  }
  const sc = ui.scroller;
  const atBottom = stickToBottom || sc.scrollHeight - sc.scrollTop - sc.clientHeight < 30;
  const msgs = store ? [...store.byId.values()].sort((a, b) => a.seq - b.seq) : [];
  const have = new Set(msgs.filter((m) => m.sender_id === S.me.id).map((m) => m.client_msg_id));
  const pending = S.live ? S.live.pending().filter((p) => p.channel_id === cid && !have.has(p.client_msg_id)) : [];
  const items = [...msgs.map((m) => messageItem(m, false)), ...pending.map((p) => messageItem(p, true))];
  if (!items.length) items.push(h("li", { className: "empty", text: store && !store.loading ? "No messages yet." : "Loading…" }));
  const focusedEdit = S.editing && document.activeElement === S.editing.el;
  ui.list.replaceChildren(...items);
  if (focusedEdit) S.editing.el.focus();
  ui.older.hidden = !(store && store.hasMore);
  if (atBottom && !keepScroll) sc.scrollTop = sc.scrollHeight;
  stickToBottom = false;
}

// -- start ------------------------------------------------------------------------------------
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && S.current) markRead(S.current);
});

if (signedIn()) {
  startSession().catch((err) => {
    renderAuth();
    report(err);
  });
} else {
  renderAuth();
}
