// The registered workflows and the runs, in one shape whatever the API's lists look like.
import * as api from "./api.js";

function list(data, key) {
  if (Array.isArray(data)) return data;
  if (data && Array.isArray(data[key])) return data[key];
  if (data && typeof data[key] === "object") return Object.entries(data[key]).map(([name, v]) => ({ name, ...v }));
  if (data && typeof data === "object") return Object.entries(data).map(([name, v]) => ({ name, ...v }));
  return [];
}

export function inputsOf(workflow) {
  const inputs = workflow.inputs || [];
  return Array.isArray(inputs) ? inputs : Object.entries(inputs).map(([name, spec]) => ({ name, ...spec }));
}

export async function workflows() {
  return list(await api.json("workflows"), "workflows").map((w) => ({
    ...w,
    name: w.name || w.path || w.id,
    title: w.title || w.workflow_name || w.display_name || "",
    inputs: inputsOf(w),
  }));
}

export function runEntry(run) {
  return { ...run, id: run.run_id || run.id };
}

export async function runs(query) {
  const data = await api.json("runs", { query });
  return {
    runs: list(data, "runs").map(runEntry),
    next: data && !Array.isArray(data) ? data.next_cursor || data.cursor || data.next || null : null,
  };
}

// A workflow as the runs list shows it: its registered name, else its file's name.
export function workflowLabel(run) {
  const workflow = String(run.workflow || run.path || "");
  return workflow.startsWith("/") ? workflow.split("/").pop() : workflow;
}
