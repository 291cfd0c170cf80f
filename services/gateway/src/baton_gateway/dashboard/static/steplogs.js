// The execution page's step log panel: the lines the steps' tools write, followed live (SSE)
// from /v1/executions/{id}/logs until the execution ends. Cut lines and the marker of dropped
// lines are shown as such.
import { el } from "/static/app.js";

const root = document.getElementById("execution");
const panel = document.getElementById("steplog");
const dot = document.getElementById("steplog-live");

function row(line) {
  const attempt = `#${line.attempt}${line.kind === "compensate" ? " undo" : ""}`;
  const text = line.message + (line.cut ? " [cut]" : "");
  return el("li", { "data-level": line.level, "data-step": line.step_id, class: line.marker ? "marker" : null },
    `${line.at.slice(11, 23)}  ${line.step_id} ${attempt}  ${text}`);
}

function start() {
  const source = new EventSource(`/v1/executions/${root.dataset.id}/logs?follow=true`, { withCredentials: true });
  source.onopen = () => dot.classList.add("on");
  source.onerror = () => dot.classList.remove("on");
  source.addEventListener("line", (m) => {
    document.getElementById("steplog-empty").hidden = true;
    const stick = panel.scrollTop + panel.clientHeight >= panel.scrollHeight - 4;
    panel.append(row(JSON.parse(m.data)));
    if (stick) panel.scrollTop = panel.scrollHeight;
  });
  source.addEventListener("end", () => { source.close(); dot.classList.remove("on"); });
}

if (root && panel) start();
