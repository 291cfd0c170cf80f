// Metrics drawn from the projections: throughput, success rate, p50/p95 per plan and per tool.
import { api, el, ms, toast } from "/static/app.js";
import { loadInsights } from "/static/insights.js";

const period = document.getElementById("hours");

function bars(rows, key, count) {
  const max = Math.max(1, ...rows.map((r) => r.p95_ms || 0));
  return el("table", { class: "bars" },
    el("thead", {}, el("tr", {}, ...[key, count, "p50", "p95", ""].map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, ...rows.map((r) => el("tr", { "data-name": r[key] },
      el("td", { text: r[key] }), el("td", { text: String(r[count]) }),
      el("td", { text: ms(r.p50_ms) }), el("td", { text: ms(r.p95_ms) }),
      el("td", {}, el("div", { class: "bar", style: `width:${(100 * (r.p95_ms || 0)) / max}%` }))))));
}

function throughput(points) {
  const svg = document.getElementById("throughput");
  const width = Math.max(300, svg.clientWidth || 600), height = 160;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const max = Math.max(1, ...points.map((p) => p.finished));
  const w = width / Math.max(1, points.length);
  svg.replaceChildren(...points.map((p, i) => el("rect", {
    svg: true, x: i * w + 1, width: Math.max(1, w - 2), y: height - 20 - ((height - 30) * p.finished) / max,
    height: ((height - 30) * p.finished) / max,
  }, el("title", { svg: true, text: `${p.minute}: ${p.finished} finished` }))),
  el("text", { svg: true, x: 4, y: 12, text: `max ${max}/min` }));
}

async function load() {
  const m = await api("GET", `/v1/metrics/summary?hours=${period.value}`);
  document.getElementById("finished").textContent = String(m.finished);
  document.getElementById("success").textContent =
    m.success_rate === null ? "—" : `${(100 * m.success_rate).toFixed(1)}%`;
  throughput(m.throughput);
  document.getElementById("by-plan").replaceChildren(bars(m.by_plan, "plan", "executions"));
  document.getElementById("by-tool").replaceChildren(bars(m.by_tool, "tool", "steps"));
  totals(m.totals);
}

// The business metrics projection: all-time counts of the workspace.
function table(head, rows) {
  return el("table", {},
    el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((v) => el("td", { text: v === null || v === undefined ? "—" : String(v) }))))));
}

function tile(label, value) {
  return el("div", { class: "card tile" }, el("span", { class: "label", text: label }), el("span", { class: "big", text: String(value) }));
}

function totals(t) {
  const e = t.executions, a = t.approvals;
  document.getElementById("totals-tiles").replaceChildren(
    tile("Started", e.started), tile("Succeeded", e.succeeded), tile("Failed", e.failed),
    tile("Cancelled", e.cancelled), tile("Approvals decided", a.decisions),
    tile("Time to decide", a.mean_seconds_to_decision === null ? "—" : `${a.mean_seconds_to_decision.toFixed(1)} s`),
    tile("Schedule firings", t.schedules.firings),
    tile("From the cache", t.cache ? `${t.cache.hits} (${(100 * t.cache.hit_ratio).toFixed(1)}%)` : "—"));
  document.getElementById("totals-plans").replaceChildren(table(["plan", "started", "succeeded", "failed", "cancelled"],
    e.by_plan.map((p) => [p.plan, p.started, p.succeeded, p.failed, p.cancelled])));
  document.getElementById("totals-tools").replaceChildren(table(["tool", "attempts", "success", "mean"],
    t.tools.map((x) => [x.tool, x.attempts, x.success_rate === null ? null : `${(100 * x.success_rate).toFixed(1)}%`, ms(x.mean_ms)])));
  document.getElementById("totals-llm").replaceChildren(t.llm.length ? table(["model", "calls", "tokens in", "tokens out"],
    t.llm.map((x) => [x.model, x.calls, x.input_tokens, x.output_tokens])) : "");
}

period.addEventListener("change", () => load().catch((err) => toast(err.message)));
load().catch((err) => toast(err.message));
loadInsights();

// New finishes redraw the charts (debounced): the workspace stream, not polling.
import("/static/app.js").then(({ follow, refresher }) => {
  const redraw = refresher(() => load().catch(() => {}), 2000);
  follow("/v1/stream", (type) => { if (/succeeded|failed|cancelled/.test(type)) redraw(); });
});
