// The page's views, chosen by the URL's fragment: #/runs, #/runs/ID, #/start, #/start/WORKFLOW.
import { problem } from "./dom.js";
import { renderRuns } from "./runs.js";
import { renderRun } from "./run.js";
import { renderStart } from "./start.js";

let cleanup = null; // what the shown view must stop (timers, event streams) when another is shown
let shown = 0;

async function route(moved) {
  const generation = ++shown;
  if (cleanup) cleanup();
  cleanup = null;
  const main = document.getElementById("view");
  const [path, search] = (location.hash.slice(1) || "/runs").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(search || "");
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === (parts[0] === "start" ? "start" : "runs") && parts.length <= 1) {
      link.setAttribute("aria-current", "page");
    } else {
      link.removeAttribute("aria-current");
    }
  }
  main.setAttribute("aria-busy", "true");
  main.replaceChildren();
  let stop = null;
  try {
    if (parts[0] === "runs" && parts.length > 1) stop = await renderRun(main, parts.slice(1).join("/"));
    else if (parts[0] === "start") stop = await renderStart(main, parts.slice(1).join("/"), params);
    else stop = await renderRuns(main, params);
  } catch (error) {
    if (generation === shown) main.replaceChildren(problem(error));
  }
  if (generation !== shown) {
    if (stop) stop(); // another view was asked for meanwhile
    return;
  }
  cleanup = stop;
  main.setAttribute("aria-busy", "false");
  const heading = main.querySelector("h1");
  document.title = heading ? `${heading.textContent} · runner` : "runner";
  if (moved) main.focus();
}

window.addEventListener("hashchange", () => route(true));
route(false);
