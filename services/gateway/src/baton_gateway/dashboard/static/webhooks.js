// Webhooks: endpoints (inbound), subscriptions (outbound) and the delivery log with redeliver —
// through the same /v1/webhooks API as `baton webhooks`. The page follows the workspace's
// webhook events (GET /v1/webhooks/stream) and reads a list again when one of its kind arrives.
import { api, badge, coalesced, el, follow, ms, toast, when } from "/static/app.js";

const $ = (id) => document.getElementById(id);
const filters = $("delivery-filters");

function showError(box, e) { box.textContent = e.message; box.hidden = false; }

// Shown beside the list, not in it: a live event redraws the list, and a secret is shown once.
function showSecret(box, made) {
  $(box).replaceChildren(secretNote(made));
}

function secretNote(made) {
  return el("p", { class: "card", role: "status", "data-role": "secret" },
    "Secret (shown once): ", el("code", { text: made.secret }),
    made.url ? el("span", {}, " · post to ", el("code", { text: made.url })) : null);
}

function endpointRow(e) {
  const rotate = async () => {
    const made = await api("POST", `/v1/webhooks/endpoints/${e.id}/rotate`, {});
    showSecret("endpoint-secret", made);
  };
  const remove = async () => {
    if (!confirm(`Delete endpoint ${e.name}? Senders get 404 from now on.`)) return;
    await api("DELETE", `/v1/webhooks/endpoints/${e.id}`);
    refresh.endpoints();
  };
  const what = e.action.plan ? `plan ${e.action.plan.name || "(unnamed)"}` : `“${e.action.request}”`;
  return el("tr", { "data-endpoint": e.id },
    el("td", { text: e.name }), el("td", { text: e.scheme }),
    el("td", { class: "mono small", text: e.url }), el("td", { class: "small", text: what }),
    el("td", {}, el("div", { class: "controls" },
      el("button", { type: "button", onclick: () => rotate().catch((x) => toast(x.message)) }, "Rotate secret"),
      el("button", { type: "button", class: "danger", onclick: () => remove().catch((x) => toast(x.message)) }, "Delete"))));
}

function table(headers, rows, empty) {
  if (!rows.length) return el("p", { class: "muted", text: empty });
  return el("table", {}, el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { text: h })))),
    el("tbody", {}, ...rows));
}

async function loadEndpoints() {
  const { items } = await api("GET", "/v1/webhooks/endpoints");
  $("endpoints").replaceChildren(table(["name", "scheme", "URL", "starts", ""], items.map(endpointRow), "No endpoints."));
}

function subscriptionRow(s) {
  const act = (path, method = "POST") => async () => {
    const result = await api(method, `/v1/webhooks/subscriptions/${s.id}${path}`);
    if (path === "/test") toast(`test delivery ${result.id} queued`);
    refresh.subscriptions(); refresh.deliveries();
  };
  const toggle = s.status === "disabled" ? ["/enable", "Enable"] : ["/disable", "Disable"];
  return el("tr", { "data-subscription": s.id },
    el("td", {}, badge(s.status)), el("td", { class: "mono small", text: s.url }),
    el("td", { class: "small", text: s.events.join(", ") + (s.plan ? ` · plan ${s.plan}` : "") }),
    el("td", { class: "small", text: s.disabled_reason || "" }),
    el("td", {}, el("div", { class: "controls" },
      el("button", { type: "button", onclick: () => act("/test")().catch((x) => toast(x.message)) }, "Send test"),
      el("button", { type: "button", onclick: () => act(toggle[0])().catch((x) => toast(x.message)) }, toggle[1]),
      el("button", { type: "button", class: "danger",
        onclick: () => confirm("Delete this subscription?") && act("", "DELETE")().catch((x) => toast(x.message)) }, "Delete"))));
}

async function loadSubscriptions() {
  const { items } = await api("GET", "/v1/webhooks/subscriptions");
  $("subscriptions").replaceChildren(table(["status", "URL", "events", "", ""], items.map(subscriptionRow), "No subscriptions."));
}

function attempts(d) {
  return el("ol", { class: "small" }, ...d.attempts.map((a) => el("li", { text:
    `${when(a.at)} · ${a.status_code ?? a.error} · ${ms(a.latency_ms)}` +
    (a.response ? ` · ${a.response.slice(0, 120)}` : "") + (a.next_at ? ` · next ${when(a.next_at)}` : "") })));
}

function deliveryRow(d) {
  const redeliver = async () => {
    await api("POST", `/v1/webhooks/deliveries/${d.id}/redeliver`);
    toast("sent again"); refresh.deliveries();
  };
  return el("tr", { "data-delivery": d.id, "data-status": d.status },
    el("td", {}, badge(d.status)), el("td", { class: "small", text: d.event_type }),
    el("td", { class: "mono small", text: d.url }),
    el("td", {}, el("details", {}, el("summary", { text: `${d.attempts.length} attempt(s)` }), attempts(d),
      d.reason ? el("p", { class: "small error", text: d.reason }) : null)),
    el("td", { class: "small", text: when(d.created_at) }),
    el("td", {}, el("button", { type: "button", disabled: d.status === "pending",
      onclick: () => redeliver().catch((x) => toast(x.message)) }, "Redeliver")));
}

async function loadDeliveries() {
  const status = filters.elements.status.value;
  const { items } = await api("GET", `/v1/webhooks/deliveries${status ? `?status=${status}` : ""}`);
  $("deliveries").replaceChildren(table(["status", "event", "URL", "attempts", "created", ""], items.map(deliveryRow), "No deliveries."));
}

const shown = (load) => coalesced(() => load().catch((e) => toast(e.message)));
const refresh = {
  endpoints: shown(loadEndpoints), subscriptions: shown(loadSubscriptions), deliveries: shown(loadDeliveries),
};
// Which list an event changes: webhook.endpoint_*, webhook.subscription_*, webhook.(re)delivery_*.
const LISTS = [["webhook.endpoint_", refresh.endpoints], ["webhook.subscription_", refresh.subscriptions],
  ["webhook.delivery_", refresh.deliveries], ["webhook.redelivery_", refresh.deliveries]];

$("endpoint-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = ev.target.elements;
  $("endpoint-error").hidden = true;
  try {
    const body = { name: f.name.value, scheme: f.scheme.value, action: JSON.parse(f.action.value) };
    if (f.allow_unsigned.checked) body.allow_unsigned = true;
    const made = await api("POST", "/v1/webhooks/endpoints", body);
    await loadEndpoints();
    showSecret("endpoint-secret", made);
  } catch (e) { showError($("endpoint-error"), e); }
});

$("subscription-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = ev.target.elements;
  $("subscription-error").hidden = true;
  try {
    const body = { url: f.url.value, events: f.events.value.split(",").map((s) => s.trim()).filter(Boolean) };
    if (f.plan.value.trim()) body.plan = f.plan.value.trim();
    const made = await api("POST", "/v1/webhooks/subscriptions", body);
    await loadSubscriptions();
    showSecret("subscription-secret", made);
  } catch (e) { showError($("subscription-error"), e); }
});

filters.elements.status.addEventListener("change", refresh.deliveries);
$("redeliver-failed").addEventListener("click", async () => {
  const local = filters.elements.since.value;
  if (!local) { toast("choose a time first"); return; }
  try {
    const { redelivered } = await api("POST", "/v1/webhooks/deliveries/redeliver", { since: new Date(local).toISOString() });
    toast(`${redelivered.length} deliveries sent again`); refresh.deliveries();
  } catch (e) { toast(e.message); }
});

const all = () => Object.values(refresh).forEach((r) => r());
all();
const source = follow("/v1/webhooks/stream", (type) => {
  for (const [prefix, list] of LISTS) if (type.startsWith(prefix)) list();
}, $("live"));
// The server subscribes before the stream opens: what happened before it is in these reads,
// what happens after is on the stream. Again after a dropped stream comes back.
source.addEventListener("open", all);
