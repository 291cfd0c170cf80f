// The executions list: filters, keyset pages, counts, and live rows from the workspace stream.
import { api, badge, el, follow, refresher, toast, when } from "/static/app.js";

const table = document.getElementById("executions");
const body = table.querySelector("tbody");
const filters = JSON.parse(table.dataset.filters);
const rows = new Map();

function query(extra = {}) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries({ ...filters, ...extra })) {
    if (!v) continue;
    params.set(k, (k === "since" || k === "until") ? new Date(v).toISOString() : v);
  }
  return params;
}

function row(item) {
  const title = item.request || item.plan_name || "(a plan)";
  return el("tr", { "data-id": item.id, "data-status": item.status },
    el("td", {}, badge(item.status)),
    el("td", {},
      el("a", { href: `/executions/${item.id}`, text: title.length > 140 ? title.slice(0, 140) + "…" : title }),
      item.error ? el("div", { class: "error small", text: item.error.slice(0, 200) }) : null),
    el("td", { text: item.steps ?? "" }),
    el("td", { text: item.planner || "" }),
    el("td", { text: when(item.created_at) }));
}

function put(item, atTop) {
  const node = row(item);
  const old = rows.get(item.id);
  if (old) old.replaceWith(node);
  else if (atTop) body.prepend(node);
  else body.append(node);
  rows.set(item.id, node);
}

async function load() {
  const page = await api("GET", "/v1/executions?" + query({ limit: 50 }));
  body.replaceChildren();
  rows.clear();
  if (!page.items.length) body.append(el("tr", {}, el("td", { colspan: 5, class: "muted", text: "No executions yet." })));
  for (const item of page.items) put(item, false);
  const older = document.getElementById("older");
  if (page.next_before) {
    const next = new URLSearchParams(location.search);
    next.set("before", page.next_before);
    older.href = "/?" + next;
    older.hidden = false;
  }
}

async function counts() {
  const stats = await api("GET", "/v1/stats");
  const list = document.getElementById("counts");
  list.replaceChildren(...Object.entries(stats.executions).sort().map(([status, n]) =>
    el("li", {}, el("a", { href: `/?status=${status}`, "data-status": status }, badge(status), ` ${n}`))));
}

const refreshCounts = refresher(() => counts().catch(() => {}), 300);

function matches(item) {
  if (filters.before) return false; // an older page: new executions belong on the first one
  if (filters.status && item.status !== filters.status) return false;
  if (filters.plan && item.plan_name !== filters.plan) return false;
  if (filters.q && !(item.request || "").toLowerCase().includes(filters.q.toLowerCase())) return false;
  return !filters.until;
}

async function onEvent(_type, message) {
  const event = JSON.parse(message.data);
  refreshCounts();
  const existing = rows.get(event.execution_id);
  if (existing || event.type === "execution.requested") {
    const view = await api("GET", `/v1/executions/${event.execution_id}`).catch(() => null);
    if (!view) return;
    const item = {
      id: view.id, status: view.status, request: view.request, error: view.error,
      steps: view.plan ? view.plan.steps.length : "", planner: view.planner, created_at: view.created_at,
      plan_name: view.plan ? view.plan.name : null,
    };
    if (existing || matches(item)) {
      const empty = body.querySelector("td[colspan]");
      if (empty) empty.parentElement.remove();
      put(item, !existing);
    }
  }
}

document.getElementById("new-execution").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.target;
  const error = document.getElementById("new-error");
  error.hidden = true;
  const text = form.text.value.trim();
  const payload = form.kind.value === "plan" ? { plan: text } : { request: text };
  try {
    if (form.inputs.value.trim()) payload.inputs = JSON.parse(form.inputs.value);
    const made = await api("POST", "/v1/executions", payload);
    location.href = `/executions/${made.id}`;
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
  }
});

load().catch((err) => toast(err.message));
counts().catch(() => {});
follow(`/v1/stream?after=${table.dataset.after}`, onEvent, document.getElementById("live"));
