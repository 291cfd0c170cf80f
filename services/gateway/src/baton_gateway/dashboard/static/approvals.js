// The approval inbox: approve, reject (with a reason) or edit the input (JSON, checked against
// the tool's schema by the service) — through the same API as `baton approvals`. A question of the
// planner's (kind "question") shows what it understood and not, the closest tools, and a text box
// for the answer.
import { api, badge, coalesced, el, follow, toast, when } from "/static/app.js";

const box = document.getElementById("approvals");
const status = box.dataset.status;

function questionCard(a) {
  const asked = a.input || {};
  const answer = el("textarea", { rows: 3, "aria-label": "your answer", "data-role": "answer",
    placeholder: "the unclear part in other words, or the missing value" });
  if (a.answer) answer.value = a.answer;
  const error = el("p", { class: "error", role: "alert", hidden: true, "data-role": "error" });
  const open = a.status === "pending";
  const send = async (body) => {
    error.hidden = true;
    try {
      await api("POST", `/v1/approvals/${a.id}/decision`, body);
      toast(`${body.decision === "answer" ? "answer" : "decline"} recorded`);
      refresh();
    } catch (e) { error.textContent = e.message; error.hidden = false; }
  };
  const items = (label, list) => (list || []).length
    ? el("div", { class: "small" }, el("strong", { text: label }), el("ul", {}, ...list.map((x) => el("li", { text: x })))) : null;
  const choices = (asked.choices || []).map((c) =>
    el("li", {}, el("button", { type: "button", disabled: !open, "data-choice": c.tool,
      onclick: () => { answer.value = c.tool; } }, c.tool),
      el("span", { class: "muted", text: ` for ${JSON.stringify(c.task)}: ${c.description}` })));
  return el("article", { class: "card", "data-approval": a.id, "data-status": a.status, "data-kind": "question" },
    el("h2", {}, badge(a.status), " Question about ", el("a", { href: `/executions/${a.execution_id}`, text: a.execution_id.slice(0, 8) })),
    asked.request ? el("p", { class: "muted small", text: `request: ${asked.request}` }) : null,
    el("p", { "data-role": "message", text: a.message || "" }),
    items("Understood", asked.understood), items("Not understood", asked.not_understood),
    choices.length ? el("div", { class: "small" }, el("strong", { text: "Closest tools" }), el("ul", {}, ...choices)) : null,
    a.deadline_at ? el("p", { class: "muted small", text: `answer by ${when(a.deadline_at)}` }) : null,
    answer,
    el("div", { class: "controls" },
      el("button", { type: "button", disabled: !open, "data-action": "answer", onclick: () => {
        const text = answer.value.trim();
        if (!text) { error.textContent = "write an answer first"; error.hidden = false; return; }
        send({ decision: "answer", answer: text });
      } }, "Answer"),
      el("button", { type: "button", class: "danger", disabled: !open, "data-action": "reject",
        onclick: () => send({ decision: "reject" }) }, "Decline")),
    error);
}

function card(a) {
  if (a.kind === "question") return questionCard(a);
  const editor = el("textarea", { rows: 6, "aria-label": `input for ${a.step_id}`, "data-role": "input" });
  editor.value = JSON.stringify(a.decided_input ?? a.input, null, 2);
  const comment = el("input", { placeholder: "comment or reason", "aria-label": "comment", "data-role": "comment" });
  const error = el("p", { class: "error", role: "alert", hidden: true, "data-role": "error" });
  const open = a.status === "pending";
  const decide = async (decision) => {
    error.hidden = true;
    const body = { decision, comment: comment.value.trim() || null };
    if (decision === "edit") {
      try { body.input = JSON.parse(editor.value); } catch (e) {
        error.textContent = `the input is not JSON: ${e.message}`; error.hidden = false; return;
      }
    }
    try {
      await api("POST", `/v1/approvals/${a.id}/decision`, body);
      toast(`${decision} recorded`);
      refresh();
    } catch (e) { error.textContent = e.message; error.hidden = false; }
  };
  const votes = (a.votes || []).map((v) => `${v.decision} by ${v.user}${v.comment ? ": " + v.comment : ""}`);
  return el("article", { class: "card", "data-approval": a.id, "data-status": a.status },
    el("h2", {}, badge(a.status), " ", el("a", { href: `/executions/${a.execution_id}#step=${a.step_id}`, text: a.step_id }),
      el("span", { class: "muted small", text: `  ${a.tool}` })),
    a.message ? el("p", { "data-role": "message", text: a.message }) : null,
    el("p", { class: "muted small", text:
      `approvers: ${(a.approvers || []).join(", ") || "anyone who may approve"} · needs ${a.min_approvals}` +
      (a.deadline_at ? ` · deadline ${when(a.deadline_at)}` : "") }),
    votes.length ? el("ul", { class: "small" }, ...votes.map((v) => el("li", { text: v }))) : null,
    editor, comment,
    el("div", { class: "controls" },
      el("button", { type: "button", disabled: !open, "data-action": "approve", onclick: () => decide("approve") }, "Approve"),
      el("button", { type: "button", disabled: !open, "data-action": "edit", onclick: () => decide("edit") }, "Approve with edits"),
      el("button", { type: "button", class: "danger", disabled: !open, "data-action": "reject", onclick: () => decide("reject") }, "Reject")),
    error);
}

let shown = null; // what the cards show: redrawn only when that changes (an edit being typed stays)

async function load() {
  const { items } = await api("GET", `/v1/approvals?status=${status}`);
  const seen = JSON.stringify(items.map((a) => [a.id, a.status, (a.votes || []).length]));
  if (seen === shown) return;
  shown = seen;
  box.replaceChildren(...(items.length ? items.map(card) : [el("p", { class: "muted", text: `No ${status} approvals.` })]));
}

// A gate's view is written in the same transaction as its event in the execution's history,
// which the workspace stream follows from the moment this page was rendered (data-after): when
// an approval event arrives the inbox reads its new state; nothing falls between the two.
const refresh = coalesced(() => load().catch((e) => toast(e.message)));
refresh();
follow(`/v1/stream?after=${box.dataset.after}`, (type) => { if (type.startsWith("approval.")) refresh(); },
  document.getElementById("live"));
