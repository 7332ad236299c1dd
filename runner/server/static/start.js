// Starting a registered workflow: the list of workflows, and a form built from one's typed inputs.
import * as api from "./api.js";
import { h } from "./dom.js";

export async function renderStart(main, name) {
  const { workflows: all, invalid } = await api.json("workflows");
  if (!name) {
    main.replaceChildren(h("h1", {}, "Start a workflow"), choices(all), broken(invalid || []));
    return null;
  }
  const workflow = all.find((w) => w.name === name);
  if (!workflow) {
    main.replaceChildren(h("h1", {}, "Start a workflow"),
      h("p", { class: "error", role: "alert" }, `No workflow named ${name} is registered.`), choices(all));
    return null;
  }
  main.replaceChildren(
    h("p", { class: "crumbs" }, h("a", { href: "#/start" }, "Workflows"), " / ", workflow.name),
    h("h1", {}, `Start ${workflow.title || workflow.name}`),
    ...(workflow.description ? [h("p", { class: "muted" }, workflow.description)] : []),
    form(workflow));
  return null;
}

function choices(all) {
  if (!all.length) return h("p", {}, "No workflow is registered: start the server with --workflows DIR.");
  return h("ul", { class: "workflows" }, all.map((w) =>
    h("li", {},
      h("a", { href: `#/start/${w.name.split("/").map(encodeURIComponent).join("/")}`, "data-workflow": w.name }, w.name),
      w.title && w.title !== w.name ? h("span", { class: "muted" }, ` ${w.title}`) : null,
      w.description ? h("p", { class: "muted" }, w.description) : null,
      h("p", { class: "hint" }, w.inputs.length ? `inputs: ${w.inputs.map((i) => i.name).join(", ")}` : "no inputs"))));
}

// Workflow files the server found invalid at start, with why: they cannot be started.
function broken(invalid) {
  if (!invalid.length) return "";
  return h("section", { "aria-labelledby": "invalid-title" },
    h("h2", { id: "invalid-title" }, "Not registered: not valid"),
    h("ul", { class: "workflows" }, invalid.map((w) =>
      h("li", { "data-invalid": w.name }, h("strong", {}, w.name),
        h("ul", {}, w.problems.map((p) => h("li", { class: "error" }, `line ${p.line}: ${p.path ? `${p.path}: ` : ""}${p.message}`)))))));
}

function form(workflow) {
  const summary = h("div", { class: "error-summary", role: "alert", tabindex: "-1", hidden: true });
  const fields = workflow.inputs.map(field);
  const submit = h("button", { type: "submit" }, "Start run");
  const element = h("form", { class: "start", novalidate: true, "data-workflow": workflow.name },
    summary, fields.map((f) => f.element),
    fields.length ? null : h("p", { class: "muted" }, "This workflow takes no inputs."),
    h("div", { class: "actions" }, submit));
  element.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const f of fields) f.error("");
    summary.hidden = true;
    const inputs = {};
    const wrong = [];
    for (const f of fields) {
      try {
        const value = f.value();
        if (value !== undefined) inputs[f.name] = value;
      } catch (error) {
        wrong.push({ path: `inputs.${f.name}`, message: error.message });
      }
    }
    if (wrong.length) return show(wrong);
    submit.disabled = true;
    try {
      const answer = await api.json("runs", { method: "POST", body: { workflow: workflow.name, inputs } });
      location.hash = `#/runs/${encodeURIComponent(answer.run_id)}`;
    } catch (error) {
      show(error.problems && error.problems.length ? error.problems : [{ message: error.message }]);
    } finally {
      submit.disabled = false;
    }
  });

  function show(problems) {
    const items = problems.map((p) => {
      const path = Array.isArray(p.path) ? p.path.join(".") : String(p.path || "");
      const named = fields.find((f) => path === `inputs.${f.name}` || path === f.name || path.startsWith(`inputs.${f.name}.`));
      if (named) named.error(p.message);
      return h("li", {}, named ? h("a", { href: `#input-${named.name}`, onclick: (e) => { e.preventDefault(); named.focus(); } },
        `${named.name}: ${p.message}`) : p.message);
    });
    summary.replaceChildren(h("h2", {}, "The run was not started"), h("ul", {}, items));
    summary.hidden = false;
    summary.focus();
  }
  return element;
}

// One input as a labelled control; value() gives it in its declared type (undefined: not given).
function field(spec) {
  const id = `input-${spec.name}`;
  const type = spec.type || "string";
  const choices = spec.enum;
  const required = Boolean(spec.required);
  const given = spec.default ?? undefined; // the API gives null for "no default"
  const hint = spec.description ? h("p", { class: "hint", id: `${id}-hint` }, spec.description) : null;
  const message = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  const described = [hint && `${id}-hint`, `${id}-error`].filter(Boolean).join(" ");
  let control;
  let value;
  if (Array.isArray(choices)) {
    control = h("select", { id, name: spec.name, required, "aria-describedby": described },
      required && given === undefined ? h("option", { value: "" }, "choose…") : null,
      !required && given === undefined ? h("option", { value: "" }, "(not given)") : null,
      choices.map((c, index) => h("option", { value: String(index), selected: c === given }, String(c))));
    // The option's index is its value, so that a choice keeps its type (a number stays one).
    value = () => {
      if (control.value === "") return required ? fail("choose one") : undefined;
      return choices[Number(control.value)];
    };
  } else if (type === "boolean") {
    control = h("input", { id, name: spec.name, type: "checkbox", checked: given === true, "aria-describedby": described });
    value = () => control.checked;
  } else if (type === "integer" || type === "number") {
    control = h("input", {
      id, name: spec.name, type: "number", inputmode: type === "integer" ? "numeric" : "decimal",
      step: type === "integer" ? "1" : "any", min: spec.minimum, max: spec.maximum, required,
      value: given ?? null, "aria-describedby": described,
    });
    value = () => {
      if (control.value.trim() === "") return required ? fail("required") : undefined;
      const number = Number(control.value);
      if (!Number.isFinite(number) || (type === "integer" && !Number.isInteger(number))) {
        return fail(`expected ${type === "integer" ? "an integer" : "a number"}`);
      }
      return number;
    };
  } else if (type === "array" || type === "object") {
    control = h("textarea", { id, name: spec.name, rows: "3", required, spellcheck: "false", "aria-describedby": described },
      given === undefined ? "" : JSON.stringify(given, null, 2));
    value = () => {
      if (control.value.trim() === "") return required ? fail("required") : undefined;
      try {
        return JSON.parse(control.value);
      } catch {
        return fail(`expected ${type === "array" ? "an array" : "an object"} as JSON`);
      }
    };
  } else {
    control = h("input", { id, name: spec.name, type: "text", required, value: given ?? null, "aria-describedby": described });
    // Left empty with no default: not given, and the server says whether it is required.
    value = () => (control.value === "" && given === undefined ? undefined : control.value);
  }
  const label = h("label", { for: id }, spec.name,
    h("span", { class: "muted" }, ` ${Array.isArray(choices) ? "one of" : type}${required ? ", required" : ""}`));
  const element = h("div", { class: `field field-${type === "boolean" ? "check" : "text"}` },
    type === "boolean" ? [control, label] : [label, control], hint, message);
  return {
    name: spec.name,
    element,
    value,
    focus: () => control.focus(),
    error(text) {
      message.textContent = text;
      message.hidden = !text;
      if (text) control.setAttribute("aria-invalid", "true");
      else control.removeAttribute("aria-invalid");
    },
  };
}

function fail(message) {
  throw new Error(message);
}
