// Agents: the tool catalogue with origins and the registry's figures, broken sources, plugins —
// through the same /v1/tools, /v1/agents and /v1/plugins API as `baton tools|agents|plugins`.
import { api, el, follow, refresher, toast } from "/static/app.js";

const $ = (id) => document.getElementById(id);
const pct = (v) => (v === null || v === undefined ? "—" : `${Math.round(v * 100)}%`);
const ms = (v) => (v === null || v === undefined ? "—" : `${Math.round(v)} ms`);

function table(headers, rows, empty) {
  if (!rows.length) return el("p", { class: "muted", text: empty });
  return el("table", {}, el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { text: h })))),
    el("tbody", {}, ...rows));
}

function agentRow(t) {
  const s = t.stats;
  const errors = Object.entries(s.error_classes).map(([k, n]) => `${k} ${n}`).join(", ");
  return el("tr", { "data-agent": t.name },
    el("td", { class: "mono", text: t.name }), el("td", { class: "small", text: t.origin || "" }),
    el("td", { text: t.side_effect }), el("td", { text: String(s.calls) }),
    el("td", { text: pct(s.success_rate) }), el("td", { text: ms(s.p50_ms) }),
    el("td", { text: ms(s.p95_ms) }), el("td", { text: ms(s.p99_ms) }),
    el("td", { text: String(s.retries) }), el("td", { class: "small", text: errors }),
    el("td", { text: String(s.tokens) }));
}

async function load() {
  const data = await api("GET", "/v1/tools");
  $("digest").textContent = data.digest ? `catalogue ${data.digest.slice(0, 12)}` : "";
  const heads = ["tool", "origin", "side effect", "calls", "success", "p50", "p95", "p99", "retries", "errors", "tokens"];
  $("agents").replaceChildren(table(heads, data.tools.map(agentRow), "No tools."));
  const broken = data.broken.map((b) => el("tr", {},
    el("td", { class: "mono small", text: b.file || b.origin }), el("td", { class: "small", text: b.reason })));
  $("broken").replaceChildren(table(["source", "reason"], broken, "None: every file and plugin loaded."));
  const servers = (await api("GET", "/v1/mcp/servers")).items;
  const mcpRows = servers.map((m) => el("tr", { "data-mcp": m.name },
    el("td", { class: "mono", text: m.name }), el("td", { text: m.transport }),
    el("td", { class: "mono small", text: m.url || (m.command || []).join(" ") }),
    el("td", { text: String(m.tools.length) }),
    el("td", { class: "small", text: [...m.secret_env, ...m.secret_headers].join(", ") || "—" })));
  $("mcp").replaceChildren(table(["server", "transport", "where", "tools", "sealed secrets"], mcpRows,
    "None: register one with baton mcp servers add."));
  const { plugins } = await api("GET", "/v1/plugins");
  const rows = plugins.map((p) => el("tr", { "data-plugin": p.name },
    el("td", { class: "mono", text: p.name }), el("td", { class: "small", text: p.package }),
    el("td", { text: p.enabled ? `enabled (${p.granted.join(", ") || "no capabilities"})` : "disabled" }),
    el("td", { class: "small", text: p.capabilities.join(", ") }), el("td", { class: "small", text: p.hooks.join(", ") })));
  $("plugins").replaceChildren(table(["plugin", "package", "here", "needs", "hooks"], rows, "No plugins installed."));
}

$("refresh").addEventListener("click", async () => {
  try {
    const done = await api("POST", "/v1/tools/refresh", {});
    toast(`catalogue ${done.digest.slice(0, 12)}: ${done.tools} tools`);
    await load();
  } catch (e) { toast(e.message); }
});
load().catch((e) => toast(e.message));
// the figures change when a step ends: read them again then (like the other pages, a moment
// later too, for a view that lands after the event)
const refresh = refresher(() => load().catch((e) => toast(e.message)), 1000);
follow("/v1/stream", (type) => { if (type === "execution.step_succeeded" || type === "execution.step_failed") refresh(); },
  document.getElementById("live"));
