"use strict";
// nvr web UI. Everything a user or a camera supplies (names, file names, camera names) is put into the page
// as text nodes, never parsed as HTML.

const state = { csrf: null, seq: 0, next: null, camera: "", events: new Map(), people: [], page: null,
                source: null, poll: null, statusTimer: null };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function show(message, kind) {
  const box = document.getElementById("message");
  box.textContent = message;
  box.className = kind || "";
  box.hidden = !message;
  if (message && kind === "info") setTimeout(() => { if (box.textContent === message) box.hidden = true; }, 4000);
}

async function api(method, url, body) {
  const options = { method, headers: {}, credentials: "same-origin" };
  if (method !== "GET") options.headers["X-CSRF-Token"] = state.csrf || "";
  if (body instanceof FormData) options.body = body;
  else if (body !== undefined) { options.body = JSON.stringify(body); options.headers["Content-Type"] = "application/json"; }
  const response = await fetch(url, options);
  if (response.status === 401) { location.href = "/login"; throw new Error("not logged in"); }
  let data = {};
  try { data = await response.json(); } catch (e) { data = {}; }
  if (!response.ok) throw new Error(data.error || `request failed (${response.status})`);
  return data;
}

function when(seconds) {
  if (!seconds) return "";
  const date = new Date(seconds * 1000);
  const today = new Date().toDateString() === date.toDateString();
  return today ? date.toLocaleTimeString() : date.toLocaleString();
}

// ---- Recent ---------------------------------------------------------------------------------------------

function eventCard(event) {
  // identity: {name, score, model} once recognition decided (name null: nobody enrolled); null before that.
  const identity = event.identity;
  const known = identity && identity.name;
  const ended = event.type === "end";
  const stranger = event.stranger_group ? `Stranger (${event.stranger_group})` : "Unknown";
  const label = known ? identity.name : (identity ? stranger : (ended ? "Not identified" : "Identifying…"));
  const score = known ? `match ${identity.score.toFixed(2)}` : (event.score != null ? `face ${event.score.toFixed(2)}` : "");
  return el("div", { class: "card event", "data-id": event.id },
    event.snapshot ? el("img", { class: "snap", src: event.snapshot, alt: "", loading: "lazy" })
                   : el("div", { class: "snap" }),
    el("div", { class: known ? "name" : "name unknown", text: label }),
    el("div", { class: "meta", text: `${event.camera} · ${when(event.start_time)}` }),
    el("div", { class: "meta", text: `${score}${event.type === "end" ? "" : " · in view"}` }));
}

function placeEvent(event, atTop) {
  state.events.set(event.id, event);
  const grid = document.getElementById("events");
  const old = grid.querySelector(`[data-id="${CSS.escape(event.id)}"]`);
  const card = eventCard(event);
  if (old) old.replaceWith(card);
  else if (atTop) grid.prepend(card);
  else grid.append(card);
  document.getElementById("events-empty").hidden = true;
}

async function loadEvents(more) {
  const params = new URLSearchParams({ limit: "48" });
  if (state.camera) params.set("camera", state.camera);
  if (more && state.next) params.set("before", String(state.next));
  const data = await api("GET", `/api/events?${params}`);
  if (!more) { document.getElementById("events").replaceChildren(); state.events.clear(); }
  for (const event of data.events) placeEvent(event, false);
  state.seq = Math.max(state.seq, data.seq);
  state.next = data.next;
  document.getElementById("events-more").hidden = !data.next;
  document.getElementById("events-empty").hidden = state.events.size > 0;
  const select = document.getElementById("camera-filter");
  for (const camera of data.cameras || []) {
    if (![...select.options].some((o) => o.value === camera)) select.append(el("option", { value: camera, text: camera }));
  }
}

function applyChanges(events) {
  for (const event of events) {
    if (state.camera && event.camera !== state.camera) continue;
    state.seq = Math.max(state.seq, event.seq);
    placeEvent(event, true);
    const grid = document.getElementById("events");
    const card = grid.querySelector(`[data-id="${CSS.escape(event.id)}"]`);
    if (card && card !== grid.firstElementChild) grid.prepend(card);
  }
}

function setLive(text, ok) {
  const badge = document.getElementById("live");
  badge.textContent = text;
  badge.className = ok ? "badge ok" : "badge";
}

function startLive() {
  if (state.source || state.poll) return;
  if (!window.EventSource) { startPolling(); return; }
  const source = new EventSource(`/api/events/stream?after=${state.seq}`);
  state.source = source;
  source.addEventListener("open", () => setLive("live", true));
  source.addEventListener("events", (message) => { applyChanges(JSON.parse(message.data).events); });
  // The library changed (here, in another browser, or by `nvr faces`): redraw the view that shows it.
  source.addEventListener("library", () => {
    if ((state.page === "people" || state.page === "strangers") && !editing()) route();
  });
  source.addEventListener("busy", () => { source.close(); state.source = null; startPolling(); });
  source.addEventListener("error", () => setLive("reconnecting…", false));
}

function editing() {
  // Someone is typing a name or has chosen photos: a redraw now would throw that away.
  const page = document.getElementById(`page-${state.page}`);
  return [...page.querySelectorAll("input")].some((input) => input === document.activeElement
    || (input.type === "file" ? input.files.length > 0 : input.value !== input.defaultValue));
}

function startPolling() {
  setLive("updating every 3 s", true);
  state.poll = setInterval(async () => {
    try {
      const data = await api("GET", `/api/events?after=${state.seq}&limit=200`);
      applyChanges(data.events);
      state.seq = Math.max(state.seq, data.seq);
    } catch (e) { setLive("offline", false); }
  }, 3000);
}

// ---- Strangers ------------------------------------------------------------------------------------------

async function loadStrangers() {
  const [data, people] = await Promise.all([api("GET", "/api/strangers?limit=100"), api("GET", "/api/people?limit=500")]);
  const names = document.getElementById("people-names");
  names.replaceChildren(...people.people.map((p) => el("option", { value: p.name })));
  const list = document.getElementById("groups");
  list.replaceChildren(...data.groups.map((group) => groupCard(group, data.groups)));
  const empty = document.getElementById("groups-empty");
  empty.hidden = data.groups.length > 0;
  if (!data.available) empty.textContent = "Face recognition is not running, so there are no stranger groups.";
}

function groupCard(group, all) {
  const crops = group.crops.map((n) => el("img", { src: `/api/strangers/${group.name}/crops/${n}`, alt: "", loading: "lazy" }));
  const nameInput = el("input", { name: "name", placeholder: "Who is this?", list: "people-names", required: true, maxlength: 64 });
  const nameForm = el("form", { class: "row name-group", onsubmit: async (e) => {
    e.preventDefault();
    try {
      const result = await api("POST", `/api/strangers/${group.name}/name`, { name: nameInput.value });
      show(`${group.name} is now ${result.person.name}.`, "info");
      loadStrangers();
    } catch (err) { show(err.message); }
  } }, nameInput, el("button", { type: "submit", text: "Name" }));
  const others = all.filter((g) => g.name !== group.name);
  const target = el("select", { name: "into" }, others.map((g) => el("option", { value: g.name, text: g.name })));
  const mergeForm = others.length ? el("form", { class: "row", onsubmit: async (e) => {
    e.preventDefault();
    try { await api("POST", `/api/strangers/${group.name}/merge`, { into: target.value }); loadStrangers(); }
    catch (err) { show(err.message); }
  } }, el("label", {}, "Same as ", target), el("button", { type: "submit", class: "quiet", text: "Merge" })) : null;
  const remove = el("button", { type: "button", class: "danger", text: "Remove", onclick: async () => {
    if (!confirm(`Forget ${group.name} and its crops?`)) return;
    try { await api("DELETE", `/api/strangers/${group.name}`); loadStrangers(); } catch (err) { show(err.message); }
  } });
  return el("div", { class: "card group", "data-group": group.name },
    el("h2", { text: group.name }),
    el("div", { class: "meta", text: `seen ${group.count}× on ${group.cameras.join(", ")} · last ${when(group.last_seen)} · first ${when(group.first_seen)}` }),
    el("div", { class: "crops" }, crops), nameForm, mergeForm, el("div", { class: "row" }, remove));
}

// ---- People ---------------------------------------------------------------------------------------------

async function loadPeople() {
  const data = await api("GET", "/api/people?limit=500");
  state.people = data.people;
  const grid = document.getElementById("people");
  grid.replaceChildren(...data.people.map((person) => el("a", { class: "card person", href: `#people/${person.id}`, "data-person": person.id },
    person.cover ? el("img", { class: "snap", src: `/api/samples/${person.cover}/crop`, alt: "" }) : el("div", { class: "snap" }),
    el("div", { class: "name", text: person.name }),
    el("div", { class: "meta", text: `${person.samples} sample${person.samples === 1 ? "" : "s"}` }))));
  document.getElementById("people-empty").hidden = data.people.length > 0;
  document.getElementById("new-person").hidden = !data.enrol;
}

function uploadResults(list, result) {
  list.replaceChildren(
    ...result.accepted.map((a) => el("li", { class: "ok", text: `${a.file}: enrolled` })),
    ...result.rejected.map((r) => el("li", { class: "error", text: `${r.file}: ${r.error}` })));
}

async function upload(form, person) {
  const body = new FormData();
  body.append("person", person);
  for (const file of form.querySelector("input[type=file]").files) body.append("photo", file, file.name);
  const list = form.querySelector(".results");
  list.replaceChildren(el("li", { text: "uploading…" }));
  try {
    const result = await api("POST", "/api/photos", body);
    uploadResults(list, result);
    return result;
  } catch (err) { list.replaceChildren(el("li", { class: "error", text: err.message })); return null; }
}

async function showPerson(id) {
  const box = document.getElementById("person");
  let person;
  try { person = await api("GET", `/api/people/${encodeURIComponent(id)}`); }
  catch (err) { show(err.message); location.hash = "#people"; return; }
  const samples = person.sample_list.map((s) => el("div", { class: "sample" },
    el("img", { src: `/api/samples/${s.id}/crop`, alt: "", title: s.source }),
    el("button", { type: "button", class: "danger", title: "Remove this sample", "aria-label": "Remove sample", text: "×", onclick: async () => {
      try { await api("DELETE", `/api/samples/${s.id}`); showPerson(id); } catch (err) { show(err.message); }
    } })));
  const renameInput = el("input", { name: "name", value: person.name, required: true, maxlength: 64 });
  const uploadForm = el("form", { class: "form upload" },
    el("label", {}, "Add photos", el("input", { name: "photo", type: "file", accept: "image/*", multiple: true, required: true })),
    el("button", { type: "submit", text: "Upload" }), el("ul", { class: "results" }));
  uploadForm.addEventListener("submit", async (e) => { e.preventDefault(); const r = await upload(uploadForm, person.id); if (r && r.accepted.length) showPerson(id); });
  box.replaceChildren(el("div", { class: "card" },
    el("div", { class: "row" }, el("a", { href: "#people", text: "← People" })),
    el("h2", { class: "name", text: person.name }),
    el("div", { class: "meta", text: `${person.samples} samples · topic slug ${person.slug}` }),
    el("div", { class: "crops" }, samples),
    el("form", { class: "row rename", onsubmit: async (e) => {
      e.preventDefault();
      try { await api("POST", `/api/people/${person.id}/rename`, { name: renameInput.value }); showPerson(id); }
      catch (err) { show(err.message); }
    } }, renameInput, el("button", { type: "submit", text: "Rename" })),
    uploadForm,
    el("div", { class: "row" }, el("button", { type: "button", class: "danger", text: "Remove person", onclick: async () => {
      if (!confirm(`Remove ${person.name} and all their samples?`)) return;
      try { await api("DELETE", `/api/people/${person.id}`); location.hash = "#people"; } catch (err) { show(err.message); }
    } }))));
  box.hidden = false;
  document.getElementById("people").hidden = true;
  document.getElementById("new-person").hidden = true;
}

// ---- Status ---------------------------------------------------------------------------------------------

function table(headers, rows) {
  // Wide tables scroll sideways inside their box on a phone instead of widening the page.
  return el("div", { class: "table-wrap" }, el("table", {}, el("tr", {}, headers.map((h) => el("th", { text: h }))),
    rows.map((row) => el("tr", {}, row.map((cell) => el("td", {}, cell))))));
}

function badge(ok, yes, no) { return el("span", { class: ok ? "badge ok" : "badge bad", text: ok ? yes : no }); }

async function loadStatus() {
  const s = await api("GET", "/api/status");
  const parts = [];
  const health = s.health || {};
  parts.push(el("h2", {}, "Daemon ", badge(health.status !== "unhealthy", "healthy", "unhealthy")));
  const cameras = Object.entries(s.cameras || {});
  parts.push(table(["camera", "stream", "decoded fps", "detected fps", "reconnects", "faces in view"],
    cameras.map(([name, c]) => [name, badge(c.state === "streaming", "up", c.state), String(c.input_fps), String(c.detect_fps),
                                String(c.reconnects), String((s.faces_in_view || {})[name] ?? 0)])));
  const models = [];
  const base = (path) => String(path || "").split("/").pop();
  if (s.detector) models.push(["face detector", base(s.detector.model), s.detector.backend || "", `${s.inference_fps ?? ""} frames/s, ${s.inference_ms ?? ""} ms per frame`]);
  if (s.embedder) models.push(["embedder", base(s.embedder.model) || "—", s.embedder.backend || "", s.embedder.detail || ""]);
  if (models.length) parts.push(table(["model", "file", "backend", "details"], models));
  if (s.mqtt) {
    const outbox = s.mqtt.outbox || {};
    parts.push(table(["MQTT", ""], [["broker", s.mqtt.broker || ""], ["connection", badge(s.mqtt.connected, "connected", "disconnected")],
      ["outbox", `${outbox.pending ?? 0} waiting (${outbox.bytes ?? 0} bytes)`], ["delivered", String(s.mqtt.delivered ?? 0)]]));
  } else if (s.events) {
    parts.push(table(["events", ""], [["output", s.events]]));
  }
  const rows = [["uptime", `${s.uptime ?? "?"} s`], ["face library changes", String(s.library_version ?? "none")]];
  parts.push(table(["", ""], rows));
  document.getElementById("status").replaceChildren(...parts);
}

// ---- navigation -----------------------------------------------------------------------------------------

async function route() {
  const hash = location.hash.replace(/^#/, "") || "recent";
  const [page, detail] = hash.split("/");
  const pages = ["recent", "strangers", "people", "status"];
  const current = pages.includes(page) ? page : "recent";
  state.page = current;
  for (const name of pages) document.getElementById(`page-${name}`).hidden = name !== current;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.page === current);
  clearInterval(state.statusTimer);
  try {
    if (current === "recent") { await loadEvents(false); startLive(); }
    if (current === "strangers") await loadStrangers();
    if (current === "people") {
      document.getElementById("person").hidden = true;
      document.getElementById("people").hidden = false;
      if (detail) await showPerson(decodeURIComponent(detail)); else await loadPeople();
    }
    if (current === "status") { await loadStatus(); state.statusTimer = setInterval(() => loadStatus().catch(() => {}), 5000); }
  } catch (err) { show(err.message); }
}

async function init() {
  const session = await api("GET", "/api/session");
  state.csrf = session.csrf;
  const logout = document.getElementById("logout");
  logout.hidden = session.auth !== "session" || !session.password;
  logout.addEventListener("click", async () => {
    await fetch("/logout", { method: "POST", headers: { "X-CSRF-Token": state.csrf }, credentials: "same-origin" });
    location.href = "/login";
  });
  document.getElementById("camera-filter").addEventListener("change", (e) => { state.camera = e.target.value; loadEvents(false).catch((err) => show(err.message)); });
  document.getElementById("events-more").addEventListener("click", () => loadEvents(true).catch((err) => show(err.message)));
  const newPerson = document.getElementById("new-person");
  newPerson.addEventListener("submit", async (e) => {
    e.preventDefault();
    const result = await upload(newPerson, newPerson.elements.person.value);
    if (result && result.person) { newPerson.reset(); loadPeople(); }
  });
  window.addEventListener("hashchange", route);
  await route();
  startLive();  // on every page: library changes redraw People and Strangers too
}

document.addEventListener("DOMContentLoaded", () => { init().catch((err) => show(err.message)); });
