// The execution page's "Agents" card: the shared context (each key's value, version and writer),
// the workspace's keys the execution wrote, and the messages agents exchanged (who took each), from the execution's view.
import { el, when } from "/static/app.js";

export function renderAgents(view) {
  const card = document.getElementById("agents-card");
  const context = Object.entries(view.context || {});
  const shared = Object.entries(view.workspace_context || {});  // workspace keys it wrote
  const messages = view.messages || [];
  card.hidden = !context.length && !shared.length && !messages.length;
  const box = document.getElementById("agents");
  box.replaceChildren();
  if (context.length) box.append(el("h3", {}, "Context"), contextTable(context, "context"));
  if (shared.length) {
    box.append(el("h3", {}, "Workspace context written"), contextTable(shared, "workspace-context"));
  }
  if (messages.length) {
    const items = messages.map((m) => el("li", { "data-type": m.type },
      `#${m.seq} ${when(m.at)} ${m.type} ${m.from} → ${m.to}`,
      m.delivered_to ? ` (taken by ${m.delivered_to})` : " (waiting)",
      el("span", { class: "mono muted" }, " " + JSON.stringify(m.payload ?? null).slice(0, 160))));
    box.append(el("h3", {}, "Messages"), el("ol", { class: "log", "data-role": "messages" }, ...items));
  }
}

function contextTable(entries, role) {
  const rows = entries.map(([key, c]) => el("tr", {},
    el("td", { class: "mono" }, key),
    el("td", { class: "mono" }, JSON.stringify(c.value).slice(0, 200)),
    el("td", {}, `v${c.version}`),
    el("td", { class: "mono" }, c.written_by)));
  return el("table", { "data-role": role },
    el("thead", {}, el("tr", {}, el("th", {}, "key"), el("th", {}, "value"), el("th", {}, "version"), el("th", {}, "written by"))),
    el("tbody", {}, ...rows));
}
