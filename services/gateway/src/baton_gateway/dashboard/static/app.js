// Shared helpers: every call goes through the same /v1 API as the CLI (the session cookie
// carries the key; X-Baton-CSRF marks a change as coming from this page).

export async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { "X-Baton-CSRF": "1" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (resp.status === 401) {
    location.href = "/signin?next=" + encodeURIComponent(location.pathname + location.search);
    throw new Error("signed out");
  }
  const data = resp.status === 204 ? {} : await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const problems = (data.problems || []).map((p) => `${p.step ? p.step + ", " : ""}${p.field}: ${p.message}`);
    throw new Error(problems.length ? problems.join("\n") : data.detail || `HTTP ${resp.status}`);
  }
  return data;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElementNS(
    attrs.svg ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml", tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "svg" || v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

export function badge(status) {
  return el("span", { class: `badge s-${status}`, "data-status": status, text: status });
}

export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

export function ms(value) {
  if (value === null || value === undefined) return "";
  return value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${Math.round(value)} ms`;
}

export function toast(message) {
  const box = document.getElementById("toast");
  box.textContent = message;
  setTimeout(() => { if (box.textContent === message) box.textContent = ""; }, 6000);
}

// Follow an SSE stream; EventSource resumes with Last-Event-ID by itself after a drop. Events
// are named by their type; the page lists every type the engine knows (data-events).
export function follow(url, onEvent, dot) {
  const source = new EventSource(url, { withCredentials: true });
  source.onopen = () => dot && dot.classList.add("on");
  source.onerror = () => dot && dot.classList.remove("on");
  const handler = (m) => onEvent(m.type, m);
  for (const type of JSON.parse(document.body.dataset.events || "[]")) {
    source.addEventListener(type, handler);
  }
  source.addEventListener("end", (m) => {
    onEvent("end", m);
    source.close();
    if (dot) dot.classList.remove("on");
  });
  return source;
}

export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

export function debounce(fn, wait) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), wait); };
}

// A page that reads views (projections) when a live event says something changed: the view may
// lag the event by a moment (the projector batches), so it is read again a little later too.
export function refresher(fn, wait, again = 1500) {
  const first = debounce(fn, wait);
  const second = debounce(fn, wait + again);
  return (...args) => { first(...args); second(...args); };
}

// Run fn now; calls that come while it runs make it run once more when it ends. A page that
// reads its lists again when a live event arrives: no timer, and no change is left unread.
export function coalesced(fn) {
  let running = false;
  let again = false;
  return async () => {
    if (running) { again = true; return; }
    running = true;
    try {
      do { again = false; await fn(); } while (again);
    } finally { running = false; }
  };
}
