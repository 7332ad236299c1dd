// The run's timeline: a waterfall of its nodes and their attempts on one time axis.
import { h, duration } from "./dom.js";

const FINISHED = new Set(["succeeded", "failed", "skipped", "cancelled"]);

const STEPS = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];
const TICKS = 8;

// rows: [{id, segments: [{start, end (null: going on), state, attempt}]}]; marks: [{at, label}] (run attempts)
export function drawTimeline(rows, marks, now) {
  const starts = rows.flatMap((r) => r.segments.map((g) => g.start)).concat(marks.map((m) => m.at));
  if (!starts.length) return h("p", { class: "muted" }, "No job has started yet.");
  const origin = Math.min(...starts);
  const end = Math.max(now, ...rows.flatMap((r) => r.segments.map((g) => g.end ?? now)));
  const span = Math.max(end - origin, 0.001);
  const step = STEPS.find((st) => span / st <= TICKS) || span / TICKS;
  const at = (t) => `${(((t - origin) / span) * 100).toFixed(3)}%`;

  const ticks = [];
  for (let t = 0; t <= span + 1e-9; t += step) {
    ticks.push(h("span", { class: "tick", style: `left:${at(origin + t)}` }, label(t, step)));
  }
  const lines = marks.map((m) => h("span", { class: "mark", style: `left:${at(m.at)}`, title: m.label }, h("span", {}, m.label)));
  const items = rows.map((row) =>
    h("li", { class: "lane", "data-node": row.id },
      h("span", { class: "lane-name", title: row.id }, row.id),
      h("span", { class: "track" }, row.segments.map((g) => {
        const stop = g.end ?? now;
        const text = `${row.id}${g.attempt > 1 ? `, attempt ${g.attempt}` : ""}: ${g.state}, from +${duration(g.start - origin)} ` +
          (g.end === null ? `for ${duration(stop - g.start)} so far` : `for ${duration(stop - g.start)}`);
        return h("span", {
          class: "bar", "data-state": g.state, "data-attempt": g.attempt, title: text,
          style: `left:${at(g.start)};width:max(2px, ${(((stop - g.start) / span) * 100).toFixed(3)}%)`,
        }, h("span", { class: "visually-hidden" }, text), g.attempt > 1 ? h("span", { "aria-hidden": "true" }, `#${g.attempt}`) : null);
      }))));
  return h("div", { class: "timeline" },
    h("div", { class: "axis", "aria-hidden": "true" }, h("span", { class: "lane-name" }), h("span", { class: "track" }, ticks, lines)),
    h("ol", { class: "lanes", "aria-label": "Jobs on a time axis from the run's start" }, items));
}

function label(t, step) {
  if (step < 1) return `${t.toFixed(1)} s`;
  if (step < 60) return `${Math.round(t)} s`;
  if (step < 3600) return `${Math.round(t / 60)} min`;
  return `${(t / 3600).toFixed(step < 3600 * 2 ? 1 : 0)} h`;
}

// -- a node's bars, from the times the server recorded and the events this page saw

// Whether a node's event is history the page's first document held already (`known`):
// replayed when the stream starts from the beginning, its arrival is not when it happened.
export function replayed(known, data, attempt) {
  if (!known) return false;
  if (data.state === "running") return attempt < known.attempts || (attempt === known.attempts && (known.running || known.finished));
  return known.finished && attempt <= known.attempts;
}

// A node's bars: the server's times, split where this page saw a new attempt begin (the
// server records a node's first start and last end only).
export function bars(node) {
  const recorded = node.segments;
  if (!recorded) return node.observed;
  if (recorded.length !== 1) return recorded;
  const [whole] = recorded;
  const starts = node.observed
    .filter((g) => g.attempt > 1 && g.start > whole.start && (whole.end === null || g.start < whole.end))
    .sort((a, b) => a.start - b.start);
  if (!starts.length) return recorded;
  const split = [];
  let from = whole.start;
  for (const g of starts) {
    split.push({ start: from, end: g.start, state: "retried", attempt: g.attempt - 1 });
    from = g.start;
  }
  split.push({ ...whole, start: from });
  return split;
}

// A node's bar from its document entry: from its first start to its last end.
export function segmentsOf(entry, state) {
  if (!entry.started) return null;
  const end = entry.finished ?? (FINISHED.has(state) ? entry.started + (entry.duration_s || 0) : null);
  return [{ start: entry.started, end, state, attempt: entry.attempts || 1 }];
}
