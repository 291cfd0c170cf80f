// Schedules and triggers: next fire times, recent runs, and pause / unpause / trigger now —
// through the same API as `baton schedules` and `baton triggers`.
import { api, badge, el, follow, refresher, toast } from "/static/app.js";

const canRun = document.body.dataset.canRun === "true";
const boxes = { schedule: document.getElementById("schedules"), trigger: document.getElementById("triggers") };

function control(kind, o, action, label) {
  const disabled = !canRun || (action === "pause" && o.status === "paused") || (action === "unpause" && o.status !== "paused");
  const act = async () => {
    const note = action === "pause" ? (prompt("Note (why it is paused):") ?? null) : null;
    try {
      await api("POST", `/v1/${kind}s/${o.id}/${action}`, note ? { note } : null);
      toast(`${o.name}: ${label.toLowerCase()} done`);
      refresh();
    } catch (e) { toast(e.message); }
  };
  return el("button", { type: "button", disabled, "data-action": action, onclick: act }, label);
}

function run(r) {
  const at = r.scheduled_for || r.fired_at;
  const link = r.execution_id ? el("a", { href: `/executions/${r.execution_id}`, text: r.execution_id.slice(0, 8) }) : "";
  const what = r.outcome === "missed" ? `missed ${r.count}` : r.outcome;
  return el("li", { "data-outcome": r.outcome }, `${at.slice(0, 19)} · ${what} `, link,
    r.status ? " " : "", r.status ? badge(r.status) : "", r.reason ? el("span", { class: "muted small", text: ` ${r.reason}` }) : "");
}

function card(kind, o) {
  const d = o.definition;
  const when = kind === "schedule"
    ? (d.cron ? `cron ${d.cron}` : d.every_seconds ? `every ${d.every_seconds} s` : `once at ${d.at}`) + ` · ${o.timezone}` +
      ` · overlap ${d.overlap} · catch-up ${d.catchup}`
    : `on ${d.filter.type}` + (d.filter.plan ? ` of plan ${d.filter.plan}` : "") + ((d.filter.where || []).length ? ` · ${d.filter.where.length} condition(s)` : "");
  const next = (o.next_fire_times || []).slice(0, 3);
  return el("article", { class: "card", "data-id": o.id, "data-kind": kind, "data-status": o.status },
    el("h2", {}, badge(o.status), " ", o.name),
    el("p", { class: "muted small", text: when }),
    o.note ? el("p", { class: "small", text: `note: ${o.note}` }) : null,
    next.length ? el("p", { class: "small", "data-role": "next" }, "next: ", next.join(" · ")) : null,
    el("details", {}, el("summary", { text: `recent runs (${o.recent_runs.length})` }),
      el("ul", { class: "small" }, ...o.recent_runs.slice(0, 10).map(run))),
    el("div", { class: "controls" },
      control(kind, o, "pause", "Pause"), control(kind, o, "unpause", "Unpause"),
      control(kind, o, "trigger-now", "Trigger now")));
}

async function load(kind) {
  const { items } = await api("GET", `/v1/${kind}s`);
  boxes[kind].replaceChildren(...(items.length ? items.map((o) => card(kind, o)) : [el("p", { class: "muted", text: `No ${kind}s.` })]));
}

const refresh = refresher(() => Promise.all([load("schedule"), load("trigger")]).catch((e) => toast(e.message)), 1000);
refresh();
// a schedule's or a trigger's executions appear on the workspace stream: refresh then
follow("/v1/stream", (type) => { if (type === "execution.requested" || type.endsWith("succeeded") || type.endsWith("failed")) refresh(); }, document.getElementById("live"));
