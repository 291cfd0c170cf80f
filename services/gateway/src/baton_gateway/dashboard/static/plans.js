// Saved plans: versions with their figures (runs, success rate, p50, tool calls), the A/B
// split, promote / roll back, and the diff of two versions — the same API as `baton plans`.
import { api, el, follow, ms, refresher, toast, when } from "/static/app.js";

const canRun = document.body.dataset.canRun === "true";
const box = document.getElementById("plans");
const open = new Set(); // plans whose card is expanded, kept across refreshes

const pct = (f) => (f.success_rate === null ? "—" : `${Math.round(f.success_rate * 100)}%`);

function versionRow(p, v) {
  const f = v.figures;
  const current = v.version === p.current_version;
  const share = (p.routing.split || []).find((s) => s.version === v.version);
  const promote = el("button", { type: "button", "data-action": "promote", disabled: !canRun || (current && !share),
    onclick: () => change(p, "promote", { version: v.version }) }, "Promote");
  return el("tr", { "data-version": v.version, "data-current": current ? "true" : "false" },
    el("td", {}, `v${v.version} `, current ? el("span", { class: "badge s-succeeded", text: "current" }) : ""),
    el("td", { class: "small" }, share ? `${share.weight}%` : ""),
    el("td", { "data-role": "runs", text: String(f.executions) }),
    el("td", { "data-role": "success", text: pct(f) }),
    el("td", { text: f.p50_ms === null ? "—" : ms(f.p50_ms) }),
    el("td", { text: String(f.tool_calls) }),
    el("td", { class: "small" }, `${v.author || "—"}: ${v.message || ""}`, el("br"), el("span", { class: "muted", text: when(v.created_at) })),
    el("td", {}, promote));
}

function diffView(d) {
  const items = [
    ...d.added.map((a) => el("li", { "data-kind": "added", text: `+ ${a.step} (${a.tool})` })),
    ...d.removed.map((r) => el("li", { "data-kind": "removed", text: `− ${r.step} (${r.tool})` })),
    ...d.renamed.map((r) => el("li", { "data-kind": "renamed", text: `${r.from} → ${r.to} (renamed)` })),
    ...d.changed.map((c) => el("li", { "data-kind": "changed" }, `~ ${c.step}`,
      el("ul", {}, ...c.changes.map((x) => el("li", { class: "mono", text: `${x.path}: ${JSON.stringify(x.from)} → ${JSON.stringify(x.to)}` }))))),
    ...d.plan.map((x) => el("li", { "data-kind": "plan", text: `plan ${x.path}: ${JSON.stringify(x.from)} → ${JSON.stringify(x.to)}` })),
  ];
  const s = d.summary;
  return el("div", { "data-role": "diff" },
    el("p", { class: "small", text: `v${d.from} → v${d.to}: ${s.added} added, ${s.removed} removed, ${s.renamed} renamed, ${s.changed} changed, ${s.unchanged} unchanged` }),
    el("ul", { class: "small" }, ...items));
}

function diffForm(p) {
  const numbers = p.versions.map((v) => v.version);
  const pick = (name, value) => el("select", { name, "aria-label": name },
    ...numbers.map((n) => el("option", { value: n, selected: n === value, text: `v${n}` })));
  const from = pick("from", numbers.at(-2) ?? numbers[0]);
  const to = pick("to", numbers.at(-1));
  const out = el("div", {});
  const show = async () => {
    try {
      out.replaceChildren(diffView(await api("GET", `/v1/plans/${encodeURIComponent(p.name)}/diff?from=${from.value}&to=${to.value}`)));
    } catch (e) { toast(e.message); }
  };
  return el("div", {}, el("div", { class: "controls" }, "Diff ", from, " → ", to,
    el("button", { type: "button", "data-action": "diff", onclick: show }, "Show")), out);
}

async function change(p, action, body) {
  try {
    const r = await api("POST", `/v1/plans/${encodeURIComponent(p.name)}/${action}`, body);
    toast(`${p.name}: current version ${r.current_version}`);
    refresh();
  } catch (e) { toast(e.message); }
}

function card(p) {
  const split = (p.routing.split || []).map((s) => `v${s.version} ${s.weight}%`).join(" / ");
  const sticky = p.routing.sticky_key ? ` (sticky per ${p.routing.sticky_key})` : "";
  const details = el("details", { open: open.has(p.name), ontoggle: (e) => (e.target.open ? open.add(p.name) : open.delete(p.name)) },
    el("summary", { text: `versions (${p.versions.length}) and diff` }),
    el("table", {}, el("thead", {}, el("tr", {}, ...["version", "split", "runs", "success", "p50", "tool calls", "author: message", ""].map((h) => el("th", { text: h })))),
      el("tbody", {}, ...[...p.versions].reverse().map((v) => versionRow(p, v)))),
    diffForm(p));
  return el("article", { class: "card", "data-name": p.name, "data-current": p.current_version },
    el("h2", {}, p.name, el("span", { class: "muted small", text: `  current v${p.current_version}` })),
    split ? el("p", { class: "small", "data-role": "split", text: `A/B: ${split}${sticky}` }) : null,
    details,
    el("div", { class: "controls" },
      el("button", { type: "button", "data-action": "rollback", disabled: !canRun || p.can_roll_back_to === null,
        onclick: () => change(p, "rollback") }, p.can_roll_back_to === null ? "Roll back" : `Roll back to v${p.can_roll_back_to}`)));
}

async function load() {
  const { items } = await api("GET", "/v1/plans");
  const plans = await Promise.all(items.map((p) => api("GET", `/v1/plans/${encodeURIComponent(p.name)}`)));
  box.replaceChildren(...(plans.length ? plans.map(card) : [el("p", { class: "muted", text: "No saved plans." })]));
}

const refresh = refresher(() => load().catch((e) => toast(e.message)), 1000);
load().catch((e) => toast(e.message));
// figures change when a run of a saved plan ends
follow("/v1/stream", (type) => { if (type.endsWith("succeeded") || type.endsWith("failed") || type.startsWith("saved_plan.")) refresh(); }, document.getElementById("live"));
