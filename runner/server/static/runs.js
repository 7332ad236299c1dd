// The list of runs, newest first, with filters by status and workflow.
import { h, badge, when, duration, problem } from "./dom.js";
import { runs, workflows, workflowLabel } from "./workflows.js";

const STATUSES = ["queued", "running", "paused", "success", "failure", "cancelled", "killed"];
const REFRESH_MS = 2000;
const PAGE = 50;
const MOST = 1000; // runs the server lists at once

export async function renderRuns(main, params) {
  const chosen = { status: params.get("status") || "", workflow: params.get("workflow") || "" };
  let limit = Math.min(Number(params.get("limit")) || PAGE, MOST);
  let registered = [];
  try {
    registered = await workflows();
  } catch {
    registered = []; // the filter then offers the workflows the runs name
  }

  const select = (name, label, values) =>
    h("div", { class: "field" },
      h("label", { for: `filter-${name}` }, label),
      h("select", { id: `filter-${name}`, name },
        h("option", { value: "" }, "any"),
        values.map((v) => h("option", { value: v, selected: v === chosen[name] }, v))));
  const names = registered.map((w) => w.name);
  if (chosen.workflow && !names.includes(chosen.workflow)) names.push(chosen.workflow);
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter runs" },
    select("status", "Status", STATUSES), select("workflow", "Workflow", names));
  const body = h("tbody");
  const caption = h("caption", { class: "visually-hidden" }, "Runs, newest first");
  const table = h("table", { class: "runs" }, caption,
    h("thead", {}, h("tr", {},
      ["Run", "Workflow", "Status", "Started", "Duration"].map((c) => h("th", { scope: "col" }, c)))),
    body);
  const status = h("p", { class: "muted", role: "status" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Show more");
  main.replaceChildren(
    h("div", { class: "title-row" }, h("h1", {}, "Runs"), h("a", { class: "button", href: "#/start" }, "Start a workflow")),
    form, table, status, more);

  let failed = false;
  const refresh = async () => {
    let found;
    try {
      found = await runs({ ...chosen, limit });
    } catch (error) {
      if (!failed) status.replaceChildren(problem(error));
      failed = true;
      return;
    }
    failed = false;
    show(body, found.runs);
    const filtered = chosen.status || chosen.workflow;
    status.textContent = found.runs.length ? "" : filtered ? "No run matches these filters." : "No runs yet.";
    more.hidden = !found.next || limit >= MOST;
  };
  form.addEventListener("change", () => {
    chosen.status = form.elements.status.value;
    chosen.workflow = form.elements.workflow.value;
    limit = PAGE;
    const query = new URLSearchParams(Object.entries(chosen).filter(([, v]) => v));
    history.replaceState(null, "", `#/runs${query.size ? `?${query}` : ""}`);
    refresh();
  });
  form.addEventListener("submit", (event) => event.preventDefault());
  more.addEventListener("click", () => {
    limit = Math.min(limit + PAGE, MOST);
    refresh();
  });
  await refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  return () => clearInterval(timer);
}

// Rows are kept and updated in place, keyed by run, so that a focused link keeps its focus.
function show(body, runs) {
  const rows = new Map([...body.children].map((tr) => [tr.dataset.run, tr]));
  runs.forEach((run, index) => {
    const tr = rows.get(run.run_id) || row(run);
    rows.delete(run.run_id);
    tr.setAttribute("data-status", run.status);
    const [status, started, took] = tr.querySelectorAll("[data-cell]");
    if (status.textContent !== run.status) status.replaceChildren(badge(run.status));
    started.replaceChildren(h("time", { datetime: run.started ? new Date(run.started * 1000).toISOString() : null }, when(run.started)));
    took.textContent = duration(run.duration_s);
    if (body.children[index] !== tr) body.insertBefore(tr, body.children[index] || null);
  });
  for (const gone of rows.values()) gone.remove();
}

function row(run) {
  return h("tr", { "data-run": run.run_id },
    h("th", { scope: "row" }, h("a", { href: `#/runs/${encodeURIComponent(run.run_id)}` }, run.run_id)),
    h("td", {}, h("span", { class: "workflow" }, workflowLabel(run)),
      run.name && run.name !== workflowLabel(run) ? h("span", { class: "muted" }, ` ${run.name}`) : null),
    h("td", { "data-cell": "status" }), h("td", { "data-cell": "started" }), h("td", { "data-cell": "duration" }));
}
