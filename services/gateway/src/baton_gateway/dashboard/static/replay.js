// Replay: a slider over the history; the state as of event N is the same fold as
// `baton replay --at N` (the API folds it with the engine's own view code).
import { api, badge, debounce, el, toast, when } from "/static/app.js";

const root = document.getElementById("replay");
const id = root.dataset.id;
const slider = document.getElementById("at");
let items = [];
let asked = 0; // the slider's last move: an answer to an earlier one, arriving late, is dropped

async function start() {
  for (let after = 0; ;) {
    const page = await api("GET", `/v1/executions/${id}/events?after=${after}&limit=1000`);
    items = items.concat(page.items);
    if (page.items.length < 1000) break;
    after = page.items.at(-1).seq;
  }
  document.getElementById("of").textContent = items.length;
  document.getElementById("events").replaceChildren(...items.map((e, i) =>
    el("li", { "data-n": i + 1 }, el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); go(i + 1); } },
      `${e.type}`), el("span", { class: "muted", text: `  ${when(e.occurred_at)}` }))));
  slider.max = String(items.length);
  slider.disabled = false;
  go(items.length);
}

function go(n) {
  slider.value = String(n);
  show(n);
}

const show = debounce(async (n) => {
  document.getElementById("at-out").textContent = n;
  const ask = ++asked;
  try {
    const state = await api("GET", `/v1/executions/${id}/replay?at=${n}`);
    if (ask !== asked) return; // the slider has moved on: this state is no longer the one shown
    const v = state.view;
    document.getElementById("status").replaceWith(Object.assign(badge(v.status), { id: "status" }));
    document.getElementById("at-event").textContent = `${state.event.type} at ${when(state.event.occurred_at)}`;
    document.getElementById("state").replaceChildren(...Object.values(v.steps).map((s) =>
      el("tr", { "data-step": s.id }, el("td", { text: s.id }), el("td", { text: s.tool }),
        el("td", {}, badge(s.status)), el("td", { text: String(s.attempts) }))));
    const raw = items[n - 1];
    document.getElementById("raw-n").textContent = String(n);
    document.getElementById("raw").textContent = JSON.stringify(raw, null, 2);
    for (const li of document.querySelectorAll("#events li")) {
      li.classList.toggle("current", li.dataset.n === String(n));
    }
    document.querySelector(`#events li[data-n="${n}"]`)?.scrollIntoView({ block: "nearest" });
  } catch (err) {
    toast(err.message);
  }
}, 60);

slider.addEventListener("input", () => show(Number(slider.value)));
start().catch((err) => toast(err.message));
