// The Metrics page's "Learning" card: what the planner learned (GET /v1/insights): plan reuse,
// failure patterns and the tools' record.
import { api, el } from "/static/app.js";

export async function loadInsights() {
  const box = document.getElementById("learning");
  let data;
  try {
    data = await api("GET", "/v1/insights");
  } catch (err) {
    box.replaceChildren(el("p", { class: "muted" }, `insights unavailable: ${err.message}`));
    return;
  }
  const reuse = data.plan_reuse;
  const patterns = data.failure_patterns.map((p) => el("li", { "data-role": "failure-pattern" },
    el("strong", {}, p.tool), ` ${p.error_class} (${p.count}×) → ${p.advice}`));
  const tools = data.tool_preference.map((t) => el("li", {},
    `${t.tool}: ${t.runs} runs, ${t.success_rate === null ? "-" : Math.round(t.success_rate * 100) + "%"} ok, ` +
    `mean ${t.mean_ms === null ? "-" : Math.round(t.mean_ms) + " ms"}, cached ${t.cached}`));
  box.replaceChildren(
    el("p", {}, `Plans learned: ${data.plan_templates.length}. Reused ${reuse.hits}, planned afresh ${reuse.misses} ` +
      `since the planner started (${data.embedder} embeddings, threshold ${data.threshold}).`),
    el("h3", {}, "Failure patterns"),
    patterns.length ? el("ul", {}, ...patterns) : el("p", { class: "muted" }, "none"),
    el("h3", {}, "Tools, best first"),
    tools.length ? el("ul", {}, ...tools) : el("p", { class: "muted" }, "no steps yet"));
}
