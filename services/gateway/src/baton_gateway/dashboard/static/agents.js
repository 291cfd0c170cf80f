// The execution page's "Agents" card: the shared context (each key's value, version and writer)
// and the messages agents exchanged (who took each), from the execution's view.
import { el, when } from "/static/app.js";

export function renderAgents(view) {
  const card = document.getElementById("agents-card");
  const context = Object.entries(view.context || {});
  const messages = view.messages || [];
  card.hidden = !context.length && !messages.length;
  const box = document.getElementById("agents");
  box.replaceChildren();
  if (context.length) {
    const rows = context.map(([key, c]) => el("tr", {},
      el("td", { class: "mono" }, key),
      el("td", { class: "mono" }, JSON.stringify(c.value).slice(0, 200)),
      el("td", {}, `v${c.version}`),
      el("td", { class: "mono" }, c.written_by)));
    box.append(el("h3", {}, "Context"), el("table", { "data-role": "context" },
      el("thead", {}, el("tr", {}, el("th", {}, "key"), el("th", {}, "value"), el("th", {}, "version"), el("th", {}, "written by"))),
      el("tbody", {}, ...rows)));
  }
  if (messages.length) {
    const items = messages.map((m) => el("li", { "data-type": m.type },
      `#${m.seq} ${when(m.at)} ${m.type} ${m.from} → ${m.to}`,
      m.delivered_to ? ` (taken by ${m.delivered_to})` : " (waiting)",
      el("span", { class: "mono muted" }, " " + JSON.stringify(m.payload ?? null).slice(0, 160))));
    box.append(el("h3", {}, "Messages"), el("ol", { class: "log", "data-role": "messages" }, ...items));
  }
}
