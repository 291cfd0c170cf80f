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
}

period.addEventListener("change", () => load().catch((err) => toast(err.message)));
load().catch((err) => toast(err.message));
loadInsights();

// New finishes redraw the charts (debounced): the workspace stream, not polling.
import("/static/app.js").then(({ follow, debounce }) => {
  const redraw = debounce(() => load().catch(() => {}), 2000);
  follow("/v1/stream", (type) => { if (/succeeded|failed|cancelled/.test(type)) redraw(); });
});
