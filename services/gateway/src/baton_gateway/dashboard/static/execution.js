// One execution: header and controls, the plan as a DAG and as a list, a timeline of attempts
// and waits, step detail, and the live log, all kept current from the execution's SSE stream.
import { TERMINAL, api, badge, debounce, el, follow, ms, toast, when } from "/static/app.js";
import { renderAgents } from "/static/agents.js";
import "/static/steplogs.js";

const root = document.getElementById("execution");
const id = root.dataset.id;
const canRun = document.body.dataset.canRun === "true";
let view = null;
let events = [];
let selected = new URLSearchParams(location.hash.slice(1)).get("step");

async function load() {
  view = await api("GET", `/v1/executions/${id}`);
  render();
}

function render() {
  renderHead();
  renderGraph();
  renderTree();
  renderTimeline();
  renderDetail();
  renderAgents(view);
}

function renderHead() {
  const status = view.paused && !TERMINAL.has(view.status) ? "paused" : view.status;
  document.getElementById("status").replaceWith(Object.assign(badge(status), { id: "status" }));
  const plan = view.plan || {};
  document.getElementById("title").textContent = plan.name || view.request || "Execution";
  const bits = [`created ${when(view.created_at)}`];
  if (view.finished_at) bits.push(`finished ${when(view.finished_at)}`);
  if (view.planner) bits.push(`planner ${view.planner}`);
  const sim = view.simulation;  // a dry run, mock or replay: say so first
  if (sim) bits.unshift(`${sim.mode.replace("_", "-")}: ${sim.calls.length} call(s), no side effects`);
  document.getElementById("summary").textContent = bits.join(" · ");
  const review = view.plan_review;
  const question = view.question;  // the planner asked instead of failing (kind "question")
  const reviewBox = document.getElementById("review");
  reviewBox.hidden = !review && !question;
  if (question && !review) {
    reviewBox.replaceChildren("The planner asks: ", badge(question.status), ` ${question.question} `,
      question.status === "pending" ? el("a", { href: "/approvals", text: "answer it" }) : "");
  } else if (review) {
    reviewBox.replaceChildren("Plan review: ", badge(review.status), " ",
      review.status === "pending" ? el("a", { href: "/approvals", text: "review it" }) : "");
  }
  const error = document.getElementById("error");
  error.hidden = !view.error;
  error.textContent = view.error || "";
  const outputs = document.getElementById("outputs");
  outputs.replaceChildren(view.outputs && Object.keys(view.outputs).length
    ? el("details", { open: true }, el("summary", { text: "Outputs" }), el("pre", { text: JSON.stringify(view.outputs, null, 2) }))
    : "");
  if (sim) outputs.append(el("details", {}, el("summary", { text: "Calls (simulated)" }),
    el("pre", { text: JSON.stringify(sim.calls, null, 2) })));
  const live = !TERMINAL.has(view.status) && !["cancelling", "compensating"].includes(view.status);
  setControl("pause", canRun && live && !view.paused);
  setControl("resume", canRun && live && view.paused);
  setControl("cancel", canRun && live);
}

function setControl(name, enabled) {
  const button = document.getElementById(name);
  button.disabled = !enabled;
  button.title = canRun ? "" : "your role may not steer executions";
}

// --- the graph: layers by longest path from the roots, edges from each dependency -----------

function layout(steps) {
  const byId = new Map(steps.map((s) => [s.id, s]));
  const depth = new Map();
  const visit = (s, seen = new Set()) => {
    if (depth.has(s.id)) return depth.get(s.id);
    if (seen.has(s.id)) return 0;
    seen.add(s.id);
    const deps = (s.depends_on || []).map((d) => byId.get(d)).filter(Boolean);
    const d = deps.length ? 1 + Math.max(...deps.map((x) => visit(x, seen))) : 0;
    depth.set(s.id, d);
    return d;
  };
  steps.forEach((s) => visit(s));
  const layers = [];
  for (const s of steps) (layers[depth.get(s.id)] ||= []).push(s);
  const pos = new Map();
  layers.forEach((layer, x) => layer.forEach((s, y) => pos.set(s.id, { x: 20 + x * 200, y: 20 + y * 64 })));
  return { pos, width: 40 + layers.length * 200, height: 40 + Math.max(1, ...layers.map((l) => l.length)) * 64 };
}

// A step waits for what it declares and for every step its input, alternatives, compensation or
// condition reads (`${steps.<id>.output…}`): the same rule as the engine's Step.needs().
const REF = /\$\{\s*steps\.([A-Za-z_][A-Za-z0-9_-]*)\./g;

function needs(planStep) {
  const text = JSON.stringify([planStep.input, planStep.alternatives, planStep.compensate, planStep.when]);
  const found = new Set(planStep.depends_on || []);
  for (const m of text.matchAll(REF)) if (m[1] !== planStep.id) found.add(m[1]);
  return [...found].sort();
}

function stepList() {
  const planSteps = (view.plan && view.plan.steps) || [];
  const byId = view.steps || {};
  if (!planSteps.length) return Object.values(byId);
  return planSteps.map((p) => ({
    ...(byId[p.id] || { id: p.id, tool: p.tool, status: "pending", attempts: 0 }),
    depends_on: needs(p),
  }));
}

function renderGraph() {
  const svg = document.getElementById("graph");
  const steps = stepList();
  const { pos, width, height } = layout(steps);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  const edges = steps.flatMap((s) => (s.depends_on || []).filter((d) => pos.has(d)).map((d) => {
    const a = pos.get(d), b = pos.get(s.id);
    const path = `M${a.x + 160},${a.y + 20} C${a.x + 180},${a.y + 20} ${b.x - 20},${b.y + 20} ${b.x},${b.y + 20}`;
    return el("path", { svg: true, class: "edge", d: path, "data-from": d, "data-to": s.id });
  }));
  const nodes = steps.map((s) => {
    const p = pos.get(s.id);
    const node = el("g", {
      svg: true, class: `node st-${s.status}${s.id === selected ? " selected" : ""}`, tabindex: 0, role: "button",
      "data-step": s.id, "data-status": s.status, transform: `translate(${p.x},${p.y})`,
      "aria-label": `step ${s.id}, ${s.tool}, ${s.status}`,
      onclick: () => choose(s.id), onkeydown: (e) => (e.key === "Enter" || e.key === " ") && (e.preventDefault(), choose(s.id)),
    },
      el("rect", { svg: true, width: 160, height: 42 }),
      el("text", { svg: true, x: 10, y: 17, text: s.id.length > 20 ? s.id.slice(0, 19) + "…" : s.id }),
      el("text", { svg: true, x: 10, y: 33, class: "tool", text: `${s.tool} · ${s.status}` }));
    return node;
  });
  svg.replaceChildren(...edges, ...nodes);
}

function renderTree() {
  const tree = document.getElementById("tree");
  tree.replaceChildren(...stepList().map((s) => el("li", { "data-step": s.id },
    badge(s.status), " ",
    el("button", { type: "button", text: s.id, onclick: () => choose(s.id) }),
    el("span", { class: "muted", text: ` ${s.tool}${s.depends_on && s.depends_on.length ? " ← " + s.depends_on.join(", ") : ""}` }))));
}

function choose(stepId) {
  selected = stepId;
  history.replaceState(null, "", `#step=${encodeURIComponent(stepId)}`);
  renderGraph();
  renderDetail();
  document.getElementById("detail-h").focus?.();
}

// --- timeline: one bar per attempt; dashed lines are waits (retry backoff, locks, limits) -----

function attempts(stepId) {
  const out = [];
  let open = null, waitFrom = null;
  for (const e of events) {
    const d = e.data;
    if (d.step_id !== stepId || (d.kind && d.kind !== "run")) continue;
    const t = Date.parse(e.occurred_at);
    if (e.type === "execution.step_dispatched") {
      if (waitFrom !== null) out.push({ wait: true, from: waitFrom, to: t });
      waitFrom = null;
      open = { from: t, to: null, attempt: d.attempt, ok: null };
      out.push(open);
    } else if (e.type === "execution.step_succeeded" && open) {
      open.to = t; open.ok = true; open = null;
    } else if (e.type === "execution.step_failed") {
      if (open) { open.to = t; open.ok = false; open = null; }
      if (d.retry_at) waitFrom = t;
    } else if (e.type === "execution.step_waiting") {
      waitFrom = waitFrom ?? t;
    }
  }
  return out;
}

function renderTimeline() {
  const box = document.getElementById("timeline");
  const t0 = Date.parse(view.created_at);
  const t1 = view.finished_at ? Date.parse(view.finished_at) : Date.now();
  const span = Math.max(1, t1 - t0);
  const pct = (t) => `${(100 * (t - t0)) / span}%`;
  const rowsOut = stepList().map((s) => {
    const track = el("div", { class: "tl-track" });
    for (const a of attempts(s.id)) {
      const end = a.to ?? t1;
      const style = `left:${pct(a.from)};width:calc(${pct(end)} - ${pct(a.from)})`;
      if (a.wait) track.append(el("div", { class: "tl-wait", style, title: `waited ${ms(end - a.from)}` }));
      else track.append(el("div", {
        class: `tl-bar${a.ok === true ? " ok" : a.ok === false ? " bad" : ""}`, style,
        title: `attempt ${a.attempt}: ${ms(end - a.from)}${a.ok === false ? " (failed)" : ""}`,
      }));
    }
    return el("div", { class: "tl-row", "data-step": s.id },
      el("span", { class: "tl-label", text: `${s.id}${s.attempts > 1 ? ` ×${s.attempts}` : ""}` }), track);
  });
  box.replaceChildren(el("p", { class: "muted small", text: `0 — ${ms(span)}` }), ...rowsOut);
}

// --- step detail ---------------------------------------------------------------------------------

function renderDetail() {
  const box = document.getElementById("detail");
  const step = selected && (view.steps || {})[selected];
  if (!step) return;
  const mine = events.filter((e) => e.data.step_id === selected);
  const dispatched = mine.filter((e) => e.type === "execution.step_dispatched");
  const last = dispatched.filter((e) => e.data.kind !== "compensate").at(-1);
  const failures = mine.filter((e) => e.type === "execution.step_failed");
  const kv = [
    ["status", badge(step.status)], ["tool", step.tool], ["attempts", String(step.attempts)],
    ["started", when(step.started_at)], ["finished", when(step.finished_at)], ["duration", ms(step.duration_ms)],
    ["idempotency key", last ? el("code", { text: last.data.idempotency_key }) : "—"],
    ["compensation", step.compensation || "—"],
  ];
  if (step.waiting && step.status === "waiting") {
    const w = step.waiting;
    kv.push(["waiting for", `${w.for}: ${w.reason}${w.holders && w.holders.length ? " (held by " + w.holders.join(", ") + ")" : ""}`]);
  }
  if (step.approval) {
    const a = step.approval;
    kv.push(["approval", el("span", {}, badge(a.status), " ",
      a.status === "pending" ? el("a", { href: "/approvals", text: "decide" }) : (a.by || []).join(", "),
      a.reason ? el("div", { class: "small", text: a.reason }) : null)]);
  }
  box.replaceChildren(
    el("h3", { text: selected }),
    el("dl", { class: "kv" }, ...kv.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)])),
    el("h4", { text: "Resolved input" }), el("pre", { text: last ? JSON.stringify(last.data.input, null, 2) : "(not dispatched yet)" }),
    el("h4", { text: "Output" }), el("pre", { text: step.output === null || step.output === undefined ? "—" : JSON.stringify(step.output, null, 2) }),
    el("h4", { text: "Attempts" }),
    el("ol", { class: "attempts" }, ...dispatched.map((d) => {
      const fail = failures.find((f) => f.data.attempt === d.data.attempt && (f.data.kind || "run") === (d.data.kind || "run"));
      return el("li", { "data-attempt": d.data.attempt },
        `${d.data.kind === "compensate" ? "compensation" : "attempt " + d.data.attempt} at ${when(d.occurred_at)} (${d.data.tool})`,
        fail ? el("div", { class: "error", text: fail.data.error }) : null);
    })),
    step.error ? el("p", { class: "error", "data-role": "step-error", text: step.error }) : "",
  );
}

// --- live ------------------------------------------------------------------------------------------

function logLine(e) {
  const d = e.data;
  const detail = d.step_id ? `${d.step_id}${d.attempt ? " #" + d.attempt : ""}${d.error ? " — " + d.error : ""}` : (d.reason || d.error || "");
  return el("li", { "data-type": e.type }, `${when(e.occurred_at)}  ${e.type.replace("execution.", "")}  ${detail}`);
}

const refresh = debounce(() => load().catch((err) => toast(err.message)), 120);

// A pure step the executor ran is one event, step_succeeded with its call: the attempt it
// records opens there too (its bar starts duration_ms before the outcome).
function unfold(row) {
  const call = row.type === "execution.step_succeeded" && row.data.call;
  if (!call) return [row];
  const from = new Date(Date.parse(row.occurred_at) - (row.data.duration_ms || 0)).toISOString();
  const data = { ...row.data, ...call, inline: true };
  return [{ ...row, type: "execution.step_dispatched", occurred_at: from, data }, row];
}

function onEvent(type, message) {
  if (type === "end") { refresh(); return; }
  const row = JSON.parse(message.data);
  events.push(...unfold(row));
  const log = document.getElementById("log");
  log.append(logLine(row));
  log.scrollTop = log.scrollHeight;
  refresh();
}

async function command(name) {
  const reason = document.getElementById("reason").value.trim();
  try {
    await api("POST", `/v1/executions/${id}/${name}`, name === "resume" ? undefined : { reason: reason || null });
    toast(`${name} accepted`);
  } catch (err) {
    toast(err.message);
  }
}

for (const name of ["pause", "resume", "cancel"]) {
  document.getElementById(name).addEventListener("click", () => command(name));
}

load().then(() => follow(`/v1/executions/${id}/stream`, onEvent, document.getElementById("live")))
  .catch((err) => toast(err.message));
setInterval(() => { if (view && !TERMINAL.has(view.status)) renderTimeline(); }, 1000);
