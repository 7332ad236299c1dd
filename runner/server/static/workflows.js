// The registered workflows and the runs, as the API lists them.
import * as api from "./api.js";

export async function workflows() {
  const data = await api.json("workflows");
  return data.workflows;
}

export async function runs(query) {
  const data = await api.json("runs", { query });
  return { runs: data.runs, next: data.next_cursor };
}

// A workflow as the runs list shows it: its registered name, else its file's name.
export function workflowLabel(run) {
  return run.registered || String(run.workflow || "").split("/").pop();
}
