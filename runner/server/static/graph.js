// The job graph as SVG, laid out by dagre (dagre.min.js, the global `dagre`).
import { s } from "./dom.js";

const HEIGHT = 46;
const CHAR = 7.5; // px per character of the label at the node's font size, for the node's width

// jobs: [{id, needs: [id…], state, detail}]; pick(id) is called when a node is chosen.
export function drawGraph(jobs, pick) {
  const graph = new dagre.graphlib.Graph();
  graph.setGraph({ rankdir: "LR", nodesep: 20, ranksep: 56, marginx: 12, marginy: 12 });
  graph.setDefaultEdgeLabel(() => ({}));
  const known = new Set(jobs.map((j) => j.id));
  // Wide enough for the name and for the state line ("succeeded · attempt 2", "running · 3/10").
  for (const job of jobs) graph.setNode(job.id, { width: Math.max(160, job.id.length * CHAR + 36), height: HEIGHT });
  for (const job of jobs) for (const need of job.needs) if (known.has(need)) graph.setEdge(need, job.id);
  dagre.layout(graph);
  const { width, height } = graph.graph();

  const edges = graph.edges().map((e) => {
    const points = graph.edge(e).points;
    const d = points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
    return s("path", { class: "edge", d, "marker-end": "url(#arrow)", "data-from": e.v, "data-to": e.w });
  });
  const nodes = new Map();
  const drawn = jobs.map((job) => {
    const n = graph.node(job.id);
    const title = s("title");
    const state = s("text", { class: "node-state", x: n.x, y: n.y + 12, "text-anchor": "middle" });
    const group = s("g", {
      class: "node", tabindex: "0", role: "button", "data-job": job.id,
      onclick: () => pick(job.id),
      onkeydown: (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          pick(job.id);
        }
      },
    },
    title,
    s("rect", { x: n.x - n.width / 2, y: n.y - n.height / 2, width: n.width, height: n.height, rx: 8 }),
    s("text", { class: "node-label", x: n.x, y: n.y - 4, "text-anchor": "middle" }, job.id),
    state);
    nodes.set(job.id, { group, title, state });
    return group;
  });

  const svg = s("svg", {
    class: "graph", viewBox: `0 0 ${width} ${height}`, width, height,
    role: "group", "aria-label": "Job graph: jobs left to right in the order they need each other",
  },
  s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
    s("path", { d: "M0,0 L10,5 L0,10 z" }))),
  edges, drawn);

  // A node's colour follows data-state; `detail` says more (a matrix's progress, a reason).
  function update(job) {
    const node = nodes.get(job.id);
    if (!node) return;
    node.group.setAttribute("data-state", job.state);
    node.group.setAttribute("aria-label", `${job.id}: ${job.state}${job.detail ? `, ${job.detail}` : ""}`);
    node.state.textContent = job.progress ? `${job.state} · ${job.progress}` : job.state;
    node.title.textContent = `${job.id}: ${job.state}${job.detail ? `\n${job.detail}` : ""}`;
  }
  jobs.forEach(update);
  return { svg, update };
}
