// The server's JSON API, with the token the server may ask for.
//
// The token is asked for once (when the server first answers 401) and kept in
// sessionStorage: it goes as a bearer header on fetch and as ?token= on the
// event stream, since EventSource cannot send headers.

const BASE = new URL("api/v1/", document.baseURI);
const KEY = "runner.token";

export class ApiError extends Error {
  constructor(status, message, problems = []) {
    super(message);
    this.status = status;
    this.problems = problems;
  }
}

export function token() {
  return sessionStorage.getItem(KEY) || "";
}

let asking = null; // one dialog however many requests were refused

function askToken(refused) {
  if (!asking) {
    asking = new Promise((resolve, reject) => {
      const dialog = document.getElementById("token-dialog");
      const form = dialog.querySelector("form");
      dialog.querySelector("#token-refused").hidden = !refused;
      form.onsubmit = (event) => {
        event.preventDefault();
        sessionStorage.setItem(KEY, form.elements.token.value.trim());
        form.reset();
        dialog.close();
        asking = null;
        resolve();
      };
      dialog.oncancel = () => {
        asking = null;
        reject(new ApiError(401, "This server needs a token: reload the page to give one."));
      };
      dialog.showModal();
    });
  }
  return asking;
}

export function url(path, query = {}) {
  const result = new URL(path, BASE);
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") result.searchParams.set(name, value);
  }
  return result;
}

// A fetch under /api/v1 that asks for the token whenever it is missing or refused.
export async function request(path, { method = "GET", body, query, accept = "application/json" } = {}) {
  for (;;) {
    const sent = token();
    const headers = { Accept: accept };
    if (sent) headers.Authorization = `Bearer ${sent}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status !== 401) return response;
    await askToken(Boolean(sent));
  }
}

// The answer's JSON, or an ApiError with the server's message.
export async function json(path, options) {
  const response = await request(path, options);
  const body = await response.text();
  if (!response.ok) throw failure(response, body);
  return body ? JSON.parse(body) : null;
}

// The answer's text (a log), or an ApiError with the server's message.
export async function text(path, options) {
  const response = await request(path, { ...options, accept: "text/plain" });
  const body = await response.text();
  if (!response.ok) throw failure(response, body);
  return body;
}

// An error answer: a problem document (application/problem+json) says what was wrong.
function failure(response, body) {
  let problem = null;
  try {
    problem = JSON.parse(body);
  } catch {
    problem = null;
  }
  const message = (problem && (problem.detail || problem.title)) || `${response.status} ${response.statusText}`;
  return new ApiError(response.status, String(message), (problem && problem.problems) || []);
}

// The run's event stream; the token rides in the query, as the server allows there only.
// `after`: the last event already seen (the stream starts after it).
export function events(runId, after) {
  return new EventSource(url(`runs/${encodeURIComponent(runId)}/events`, { token: token(), after }));
}
