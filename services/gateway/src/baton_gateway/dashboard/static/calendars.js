// Calendars: each calendar with its events this week, and a slot finder — through the same
// API as `baton calendar`. Bookings made by executions appear as they happen (the stream).
import { api, el, follow, refresher, toast, when } from "/static/app.js";

const box = document.getElementById("calendars");

function card(c) {
  // Each calendar draws on its own: one whose server is slow or down shows why, not a blank page.
  const events = el("div", { "data-role": "events" }, el("p", { class: "muted small", text: "Loading events…" }));
  fillEvents(c, events);
  return el("article", { class: "card", "data-calendar": c.name },
    el("h2", {}, c.name, el("span", { class: "muted small", text: `  ${c.backend} · ${c.owner || ""} · ${c.timezone || ""}` })),
    events);
}

async function fillEvents(c, box) {
  const params = new URLSearchParams({ window_start: "today", window_end: new Date(Date.now() + 7 * 864e5).toISOString() });
  try {
    const { events } = await api("GET", `/v1/calendars/${encodeURIComponent(c.name)}/events?${params}`);
    box.replaceChildren(events.length
      ? el("ul", { class: "small" }, ...events.map((e) => el("li", { "data-uid": e.uid },
          `${when(e.start)} – ${when(e.end)}  `, el("strong", { text: e.title || "(no title)" }),
          e.attendees && e.attendees.length ? el("span", { class: "muted", text: `  ${e.attendees.join(", ")}` }) : "")))
      : el("p", { class: "muted small", text: "Nothing in the next 7 days." }));
  } catch (err) {
    box.replaceChildren(el("p", { class: "error small", text: err.message }));
  }
}

async function load() {
  const { items } = await api("GET", "/v1/calendars");
  box.replaceChildren(...(items.length ? items.map(card) : [el("p", { class: "muted", text: "No calendars yet (baton calendar connect)." })]));
}

document.getElementById("slots-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = e.target;
  const error = document.getElementById("slots-error");
  error.hidden = true;
  try {
    const { slots } = await api("POST", "/v1/calendars/slots", {
      attendees: f.attendees.value.split(",").map((a) => a.trim()).filter(Boolean),
      duration_minutes: Number(f.duration.value), window_start: f.from.value, window_end: f.to.value,
    });
    document.getElementById("slots").replaceChildren(...(slots.length ? slots.map((s) =>
      el("li", { "data-start": s.start }, `${when(s.start)} – ${when(s.end)} `, el("span", { class: "muted", text: `(${s.score}) ${s.reason}` })))
      : [el("li", { class: "muted", text: "No free slot in that window." })]));
  } catch (err) { error.textContent = err.message; error.hidden = false; }
});

const refresh = refresher(() => load().catch((e) => toast(e.message)), 500);
load().catch((e) => toast(e.message));
follow("/v1/stream", (type) => { if (type === "execution.step_succeeded") refresh(); }, document.getElementById("live"));
