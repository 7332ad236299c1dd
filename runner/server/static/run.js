// A run's page: its job graph and timeline changing as its events arrive, each job's log
// streaming, why jobs were skipped or failed, and the buttons that steer the run.
import * as api from "./api.js";
import { h, badge, when, duration, problem } from "./dom.js";
import { drawGraph } from "./graph.js";
import { bars, drawTimeline, replayed, segmentsOf } from "./timeline.js";

const FINISHED = new Set(["succeeded", "failed", "skipped", "cancelled"]);
const ENDED = new Set(["success", "failure", "cancelled", "killed"]);
const STATE_OF_RESULT = { success: "succeeded", failure: "failed", skipped: "skipped", cancelled: "cancelled" };
const REFETCH_MS = 400; // transitions close together cost one fetch of the run's document
const LOG_LINES = 5000; // lines a job's log keeps on the page

export async function renderRun(main, runId) {
  const path = `runs/${encodeURIComponent(runId)}`;
  const view = new RunView(main, runId, path);
  await view.load();
  return () => view.stop();
}

class RunView {
  constructor(main, runId, path) {
    Object.assign(this, { main, runId, path });
    this.nodes = new Map(); // node id → {id, job, state, reason, attempts, outputs, segments, observed}
    this.logs = new Map(); // node id → its log's elements and where it stands
    this.lastSeq = 0;
    this.lastType = "";
    this.stream = null;
    this.timers = [];
    this.scrolling = new Set(); // logs that got lines since the last drawing
  }

  async load() {
    this.doc = await api.json(this.path);
    this.graphJobs = this.jobGraph();
    this.build();
    this.absorb(this.doc);
    // What the first document knew: events about it are replayed history, not news to time.
    for (const node of this.nodes.values()) {
      node.known = { attempts: node.attempts, running: node.state === "running", finished: FINISHED.has(node.state) };
    }
    this.draw();
    this.listen();
    this.timers.push(setInterval(() => this.tick(), 1000));
  }

  stop() {
    this.stopped = true;
    if (this.stream) this.stream.close();
    this.timers.forEach(clearInterval);
    clearTimeout(this.refetching);
  }

  // Jobs and what each needs, from the workflow file (null if it can no longer be read:
  // then the jobs the run recorded are drawn side by side).
  jobGraph() {
    const graph = this.doc.graph || Object.keys(this.doc.jobs || {}).map((id) => ({ id, needs: [] }));
    return graph.map((j) => ({ id: j.id, kind: j.kind, needs: [].concat(j.needs || []) }));
  }

  build() {
    const doc = this.doc;
    this.heading = h("h1", {}, doc.name || doc.workflow || this.runId);
    this.meta = h("dl", { class: "meta" });
    this.feedback = h("p", { class: "feedback", role: "status" });
    const button = (label, action, hint) =>
      h("button", { type: "button", class: "secondary", "data-action": action, title: hint, onclick: () => this.act(action) }, label);
    this.buttons = {
      cancel: button("Cancel", "cancel", "Stop the run: running jobs are cancelled, cleanup jobs get their grace"),
      pause: button("Pause", "pause", "No job starts; running jobs finish"),
      unpause: button("Unpause", "unpause", "Jobs start again"),
    };
    this.resumeJob = h("select", { id: "resume-from", name: "from" });
    this.resumeButton = h("button", { type: "submit", class: "secondary", "data-action": "resume" }, "Resume");
    const resume = h("form", { class: "resume", onsubmit: (e) => { e.preventDefault(); this.act("resume"); } },
      h("label", { for: "resume-from" }, "from job"), this.resumeJob, this.resumeButton);
    this.graphBox = h("div", { class: "graph-box" });
    this.timelineBox = h("div", { class: "timeline-box" });
    this.jobList = h("div", { class: "jobs" });
    this.outputs = h("div", { class: "outputs" });
    this.main.replaceChildren(
      h("p", { class: "crumbs" }, h("a", { href: "#/runs" }, "Runs"), " / ", h("code", {}, this.runId)),
      h("div", { class: "title-row" }, this.heading,
        h("div", { class: "controls", role: "group", "aria-label": "Steer the run" },
          this.buttons.cancel, this.buttons.pause, this.buttons.unpause, resume)),
      this.feedback, this.meta,
      h("section", { "aria-labelledby": "graph-title" }, h("h2", { id: "graph-title" }, "Jobs"), this.graphBox),
      h("section", { "aria-labelledby": "timeline-title" }, h("h2", { id: "timeline-title" }, "Timeline"), this.timelineBox),
      h("section", { "aria-labelledby": "logs-title" }, h("h2", { id: "logs-title" }, "Jobs and logs"), this.jobList),
      this.outputs);
    this.drawGraph();
  }

  drawGraph() {
    if (!this.graphJobs.length) {
      this.graph = { update() {} };
      this.graphBox.replaceChildren(h("p", { class: "muted" }, "The run waits for a free slot; its jobs show once it starts."));
    } else {
      this.graph = drawGraph(this.graphJobs.map((j) => ({ ...j, state: "pending" })), (id) => this.reveal(id));
      this.graphBox.replaceChildren(this.graph.svg);
    }
    this.resumeJob.replaceChildren(
      h("option", { value: "" }, "what failed or did not run"),
      ...this.graphJobs.map((j) => h("option", { value: j.id }, j.id)));
  }

  // A queued run's document names no jobs yet: once it starts, they are drawn.
  async regraph() {
    try {
      this.absorb(await api.json(this.path));
    } catch {
      return;
    }
    this.graphJobs = this.jobGraph();
    this.drawGraph();
    this.render();
  }

  // The run's document (first, and again after transitions): states, reasons, timings.
  absorb(doc) {
    this.doc = doc;
    this.fetched = Date.now() / 1000;
    for (const [jobId, job] of Object.entries(doc.jobs || {})) {
      this.absorbNode(jobId, jobId, job);
      for (const [nodeId, instance] of Object.entries(job.instances || {})) this.absorbNode(nodeId, jobId, instance);
    }
  }

  absorbNode(id, job, entry) {
    const node = this.node(id, job);
    const state = entry.state || STATE_OF_RESULT[entry.result] || (entry.started && !entry.finished ? "running" : "pending");
    const attempts = entry.attempts || 0;
    // The document may be a moment older than the last event: a finished node stays finished
    // until it starts again (a resume), whatever an older document says.
    const stale = FINISHED.has(node.state) && !FINISHED.has(state) && attempts <= node.attempts && node.seenFinished;
    if (!stale) Object.assign(node, { state, reason: entry.reason || "", attempts });
    node.outputs = entry.outputs;
    node.segments = segmentsOf(entry, node.state);
  }

  node(id, job) {
    if (!this.nodes.has(id)) {
      this.nodes.set(id, {
        id, job: job || id, state: "pending", reason: "", attempts: 0, outputs: null,
        segments: null, // the times the server recorded
        observed: [], // the times events arrived, where the server gave none
      });
    }
    return this.nodes.get(id);
  }

  listen(after) {
    const stream = (this.stream = api.events(this.runId, after));
    this.finishedSeen = this.finishedSeen || 0;
    const on = (type, handle) =>
      stream.addEventListener(type, (event) => {
        const seq = Number(event.lastEventId);
        if (seq && seq <= this.lastSeq) return; // seen before a reconnection
        if (seq) this.lastSeq = seq;
        this.lastType = type;
        handle(event.data ? JSON.parse(event.data) : {});
      });
    on("run.started", () => {
      this.setStatus("running");
      if (!this.graphJobs.length) this.regraph();
    });
    on("run.paused", () => this.setStatus("paused"));
    on("run.unpaused", () => this.setStatus("running"));
    on("run.finished", (data) => {
      this.finishedSeen += 1;
      this.setStatus(data.status, data.reason);
      this.refetch();
    });
    on("node.expanded", (data) => {
      for (const id of data.instances || []) this.node(id, data.node);
      this.render();
    });
    on("node.started", (data) => this.transition(data));
    on("node.finished", (data) => this.transition(data));
    on("node.log", (data) => this.appendLog(data));
    // The server ends the stream after a run.finished (or at once for a run whose runner was
    // killed); EventSource would then connect again, from the last event it saw. That is kept
    // while it brings something new (a later attempt of the run), else the stream is closed.
    let seenAtError = -1;
    stream.onopen = () => {
      if (this.lost) this.feedback.textContent = "";
      this.lost = false;
    };
    stream.onerror = async () => {
      if (stream !== this.stream || stream.readyState === EventSource.CLOSED) return;
      const progressed = this.lastSeq !== seenAtError;
      seenAtError = this.lastSeq;
      let doc;
      try {
        doc = await api.json(this.path);
      } catch {
        this.feedback.textContent = "The server does not answer; trying again…"; // EventSource keeps trying
        this.lost = true;
        return;
      }
      const attempts = Array.isArray(doc.attempts) ? doc.attempts.length : 1;
      if (ENDED.has(doc.status) && (!progressed || this.finishedSeen >= attempts)) {
        stream.close();
        this.absorb(doc);
        this.render();
      }
    };
  }

  transition(data) {
    const node = this.node(data.node, data.job);
    const now = Date.now() / 1000;
    const attempt = data.attempts || 1; // a first start says 0, a retry its attempt
    const open = node.observed.find((g) => g.end === null);
    if (replayed(node.known, data, attempt)) {
      // history the first document holds already: its times are not now
    } else if (data.state === "running") {
      if (!node.observed.some((g) => g.attempt === attempt)) {
        if (open) Object.assign(open, { end: now, state: "retried" });
        node.observed.push({ start: now, end: null, state: "running", attempt });
      }
    } else if (open) {
      Object.assign(open, { end: now, state: data.state });
    }
    Object.assign(node, { state: data.state, attempts: attempt, seenFinished: FINISHED.has(data.state) });
    if (data.reason !== undefined) node.reason = data.reason;
    this.render();
    this.refetch();
  }

  // After transitions, the run's document gives the times the server recorded: fetched at
  // most every REFETCH_MS (longer for big runs, whose document is big), and once more after.
  refetch() {
    if (this.stopped) return;
    if (this.refetching) {
      this.refetchAgain = true;
      return;
    }
    this.refetchAgain = false;
    this.refetching = setTimeout(async () => {
      try {
        const doc = await api.json(this.path);
        const status = this.doc.status;
        this.absorb(doc);
        if (this.liveStatus && !ENDED.has(doc.status)) this.doc.status = this.liveStatus;
        if (ENDED.has(status) && !ENDED.has(doc.status)) this.doc.status = status;
        this.render();
      } catch {
        // the events go on; the next transition tries again
      }
      this.refetching = null;
      if (this.refetchAgain) this.refetch();
    }, Math.max(REFETCH_MS, this.nodes.size));
  }

  setStatus(status, reason) {
    this.liveStatus = status;
    this.doc.status = status;
    if (reason !== undefined) this.doc.reason = reason;
    this.renderMeta();
  }

  appendLog(data) {
    const log = this.logFor(data.node);
    if (log.step !== data.step) {
      log.step = data.step;
      log.pre.append(h("span", { class: "step" }, `── ${data.step} ──\n`));
    }
    log.pre.append(h("span", { class: data.stream === "stderr" ? "stderr" : null }, `${data.line}\n`));
    log.count += 1;
    if (log.pre.childElementCount > LOG_LINES) {
      log.pre.firstElementChild.remove();
      log.trimmed.hidden = false;
    }
    log.empty.hidden = true;
    log.download.hidden = false;
    this.scrolling.add(log);
    this.render();
  }

  // The whole log from the server, as a file: the page keeps the last LOG_LINES lines.
  async download(id) {
    try {
      const text = await api.text(`${this.path}/logs/${encodeURIComponent(id)}`);
      const link = h("a", { href: URL.createObjectURL(new Blob([text], { type: "text/plain" })), download: `${this.runId}-${id}.log` });
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    } catch (error) {
      this.feedback.replaceChildren(problem(error));
    }
  }

  logFor(id) {
    if (!this.logs.has(id)) {
      const pre = h("pre", { class: "log", role: "log", tabindex: "0", "aria-label": `Log of ${id}`, "data-log": id });
      const log = {
        pre, step: null, count: 0, follow: true, empty: h("p", { class: "muted" }, "No output yet."),
        trimmed: h("p", { class: "muted", hidden: true }, `Earlier lines are left out here: the last ${LOG_LINES} are shown.`),
        download: h("button", { type: "button", class: "secondary small", hidden: true, onclick: () => this.download(id) }, "Download the whole log"),
      };
      pre.addEventListener("scroll", () => {
        log.follow = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      });
      this.logs.set(id, log);
    }
    return this.logs.get(id);
  }

  // Drawn at most once a frame, however many events arrive.
  render() {
    if (this.drawing) return;
    this.drawing = requestAnimationFrame(() => {
      this.drawing = null;
      this.draw();
    });
  }

  draw() {
    for (const log of this.scrolling) if (log.follow) log.pre.scrollTop = log.pre.scrollHeight;
    this.scrolling.clear();
    this.renderMeta();
    for (const job of this.graphJobs) {
      const node = this.node(job.id);
      const instances = this.within(job.id);
      const done = instances.filter((n) => FINISHED.has(n.state)).length;
      this.graph.update({
        id: job.id, state: node.state, detail: node.reason,
        progress: instances.length ? `${done}/${instances.length}` : node.attempts > 1 ? `attempt ${node.attempts}` : "",
      });
    }
    this.renderJobs();
    this.renderTimeline();
  }

  renderMeta() {
    const doc = this.doc;
    const status = doc.status || "running";
    const item = (term, ...value) => [h("dt", {}, term), h("dd", {}, ...value)];
    const attempts = Array.isArray(doc.attempts) ? doc.attempts : [];
    this.meta.replaceChildren(
      ...item("Status", badge(status), doc.reason ? h("span", { class: "reason" }, ` ${doc.reason}`) : null),
      ...item("Workflow", workflowName(doc)),
      ...(doc.inputs && Object.keys(doc.inputs).length ? item("Inputs", values(doc.inputs)) : []),
      ...item("Started", when(doc.started)),
      ...item("Duration", duration(this.runDuration())),
      ...(attempts.length > 1 ? item("Attempts", String(attempts.length)) : []));
    this.main.setAttribute("data-status", status);
    const live = !ENDED.has(status);
    this.buttons.cancel.disabled = !live;
    this.buttons.pause.disabled = status !== "running";
    this.buttons.unpause.disabled = status !== "paused";
    this.resumeJob.disabled = live;
    this.resumeButton.disabled = live;
    if (doc.outputs && Object.keys(doc.outputs).length) {
      this.outputs.replaceChildren(h("h2", {}, "Outputs"), values(doc.outputs));
    }
  }

  // A run going on: its duration when the document was fetched, and the time since.
  runDuration() {
    const doc = this.doc;
    if (ENDED.has(doc.status) || doc.started === null) return doc.duration_s;
    return (doc.duration_s || 0) + (Date.now() / 1000 - this.fetched);
  }

  // A job's matrix instances, and a sub-workflow job's jobs (`report/render`).
  within(jobId) {
    return [...this.nodes.values()].filter((n) => n.id !== jobId && (n.job === jobId || n.id.startsWith(`${jobId}/`)));
  }

  // Panels are made once and moved never, so that open ones stay open and logs keep their place.
  renderJobs() {
    for (const job of this.graphJobs) {
      const panel = this.panel(this.node(job.id));
      if (panel.element.parentNode !== this.jobList) this.jobList.append(panel.element);
      for (const n of this.within(job.id)) {
        const child = this.panel(n);
        if (child.element.parentNode !== panel.children) panel.children.append(child.element);
      }
    }
  }

  panel(node) {
    this.panels = this.panels || new Map();
    let p = this.panels.get(node.id);
    if (!p) {
      const log = this.logFor(node.id);
      p = {
        state: h("span"), reason: h("p", { class: "reason", hidden: true }), outputs: h("div"),
        children: h("div", { class: "instances" }), time: h("span", { class: "muted" }),
      };
      p.element = h("details", { class: "job", id: `job-${node.id}`, "data-node": node.id },
        h("summary", {}, p.state, " ", h("span", { class: "job-name" }, node.id), " ", p.time),
        p.reason, p.outputs, log.empty, log.trimmed, log.pre, log.download, p.children);
      this.panels.set(node.id, p);
    }
    p.element.setAttribute("data-state", node.state);
    if (node.state === "failed" && !p.shownFailed) p.element.open = true; // why, and its log, at once
    p.shownFailed = node.state === "failed";
    const log = this.logFor(node.id);
    const kind = (this.graphJobs.find((j) => j.id === node.job) || {}).kind;
    log.empty.hidden = log.count > 0 || kind === "value" || node.state === "skipped" || this.within(node.id).length > 0;
    log.empty.textContent = FINISHED.has(node.state) ? "No output." : "No output yet.";
    if (p.state.textContent !== node.state) p.state.replaceChildren(badge(node.state));
    const drawn = bars(node);
    const last = drawn[drawn.length - 1];
    p.time.textContent = last ? duration((last.end ?? Date.now() / 1000) - drawn[0].start) : "";
    const why = node.reason && ["failed", "skipped", "cancelled"].includes(node.state);
    p.reason.hidden = !node.reason;
    p.reason.textContent = node.reason ? `${why ? `${capital(node.state)}: ` : ""}${node.reason}` : "";
    if (node.outputs && Object.keys(node.outputs).length) p.outputs.replaceChildren(h("h3", {}, "Outputs"), values(node.outputs));
    return p;
  }

  renderTimeline() {
    const now = Date.now() / 1000;
    const ordered = this.graphJobs.flatMap((job) => [this.node(job.id), ...this.within(job.id)]);
    const rows = ordered.map((n) => ({ id: n.id, segments: bars(n) })).filter((r) => r.segments.length);
    const attempts = Array.isArray(this.doc.attempts) ? this.doc.attempts : [];
    const marks = attempts.length > 1 ? attempts.map((a) => ({ at: a.started, label: `run attempt ${a.attempt} (${a.command})` })) : [];
    const live = !ENDED.has(this.doc.status);
    this.timelineBox.replaceChildren(drawTimeline(rows, marks, live ? now : Math.max(0, ...rows.flatMap((r) => r.segments.map((g) => g.end ?? 0)))));
  }

  tick() {
    if (!ENDED.has(this.doc.status)) this.render();
  }

  reveal(id) {
    const panel = this.panels && this.panels.get(id);
    if (!panel) return;
    panel.element.open = true;
    panel.element.scrollIntoView({ block: "nearest" });
    panel.element.querySelector("summary").focus();
  }

  async act(action) {
    const labels = { cancel: "Cancel asked", pause: "Paused: no job starts, running jobs finish", unpause: "Unpaused", resume: "Resumed" };
    if (action === "cancel" && !confirm("Cancel this run? Running jobs are stopped.")) return;
    const from = this.resumeJob.value;
    const body = action === "resume" ? (from ? { from } : {}) : undefined;
    this.feedback.replaceChildren();
    try {
      await api.json(`${this.path}/${action}`, { method: "POST", body });
      this.feedback.textContent = action === "resume" && from ? `Resumed from ${from}` : labels[action];
      if (action === "resume") {
        // The same run, a new attempt: what its events now say is news.
        for (const node of this.nodes.values()) node.known = null;
        this.liveStatus = null;
        this.doc.status = "running";
        if (this.stream) this.stream.close();
        this.lastType = "";
        this.listen(this.lastSeq);
      }
      this.refetch();
    } catch (error) {
      this.feedback.replaceChildren(problem(error));
    }
  }
}

// The registered name the run was started by, else the workflow file's path.
function workflowName(doc) {
  return doc.registered || doc.workflow || "";
}

function values(object) {
  return h("dl", { class: "values" }, Object.entries(object).flatMap(([name, value]) => [
    h("dt", {}, name), h("dd", {}, h("code", {}, typeof value === "string" ? value : JSON.stringify(value))),
  ]));
}

function capital(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
