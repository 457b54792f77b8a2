// steerwarm playground: streams chat completions from this server's /v1 API at one or several warmth values.
// Plain JavaScript, no dependencies. Invariants: every request goes to this page's own origin; text from the model
// or the API is only ever set as textContent (never parsed as HTML); an API error is shown with the API's message.
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_COMPARE = 8;
const KEY_STORE = "steerwarm-playground-key";  // sessionStorage: the key lives as long as the tab

const state = { model: null, dial: null, controller: null };

// -- the server ---------------------------------------------------------------------------------------------------
function authHeaders() {
  const headers = { "Content-Type": "application/json" };
  const key = $("key").value.trim();
  if (key) headers.Authorization = "Bearer " + key;
  return headers;
}

async function errorMessage(resp) {
  // The API answers errors as {"error": {"message", "type", "param", "code"}}: show its message.
  let message = resp.statusText || "request failed";
  try {
    const body = await resp.json();
    if (body && body.error && body.error.message) message = body.error.message;
  } catch (_) { /* not JSON: keep the status text */ }
  return `Error ${resp.status}: ${message}`;
}

function setStatus(text, isError) {
  const el = $("server-status");
  el.textContent = text;
  el.classList.toggle("error", Boolean(isError));
}

async function loadModel() {
  setStatus("Connecting…", false);
  let resp;
  try {
    resp = await fetch("/v1/models", { headers: authHeaders() });
  } catch (err) {
    setStatus(`Cannot reach the server: ${err.message}`, true);
    return;
  }
  if (!resp.ok) {
    setStatus(await errorMessage(resp), true);
    if (resp.status === 401) $("key").focus();
    applyDial();
    return;
  }
  const card = (await resp.json()).data[0];
  state.model = card.id;
  state.dial = card.steerwarm.dial;
  setStatus(`Model ${card.id} · context ${card.steerwarm.context_length} tokens · ` +
    (state.dial.enabled ? `warmth ${fmt(state.dial.range[0])} to ${fmt(state.dial.range[1])}` : "warmth dial off"),
    false);
  applyDial();
}

function applyDial() {
  const dial = state.dial;
  const note = $("dial-note");
  const slider = $("warmth");
  if (dial && !dial.enabled) {
    note.hidden = false;
    note.textContent = "The warmth dial is off on this server (no calibrated warm/cold vectors), so only warmth 0 " +
      `is offered. Server note: ${dial.note}`;
    slider.value = "0";
    slider.disabled = true;
    $("warmth-scale").textContent = "only warmth 0 (the base model) is served";
    $("compare").value = "0";
    $("compare").disabled = true;
    $("mode-single").checked = true;
    $("mode-compare").disabled = true;
  } else {
    note.hidden = true;
    slider.disabled = false;
    $("compare").disabled = false;
    $("mode-compare").disabled = false;
    if (dial) {
      slider.min = String(dial.range[0]);
      slider.max = String(dial.range[1]);
      $("warmth-scale").textContent =
        `${fmt(dial.range[0])} cold · 0 the base model · ${fmt(dial.range[1])} warm (arrow keys move it)`;
    }
  }
  showMode();
  update();
}

// -- the form -----------------------------------------------------------------------------------------------------
function fmt(x) {
  return (x > 0 ? "+" : x < 0 ? "−" : "") + Math.abs(x).toFixed(2);
}

function compareMode() {
  return $("mode-compare").checked;
}

function showMode() {
  $("single-row").hidden = compareMode();
  $("compare-row").hidden = !compareMode();
}

function warmthValues() {
  // The values to send, or null with a message beside the field.
  $("compare-error").textContent = "";
  if (!compareMode()) return [Number($("warmth").value)];
  const parts = $("compare").value.split(/[\s,;]+/).filter((s) => s !== "");
  const [lo, hi] = state.dial ? state.dial.range : [-Infinity, Infinity];
  const values = [];
  for (const part of parts) {
    const x = Number(part.replace("−", "-"));
    if (!Number.isFinite(x)) {
      $("compare-error").textContent = `"${part}" is not a number`;
      return null;
    }
    if (x < lo || x > hi) {
      $("compare-error").textContent = `${part} is outside the served range ${lo} to ${hi}`;
      return null;
    }
    values.push(x);
  }
  if (values.length === 0) {
    $("compare-error").textContent = "give at least one warmth value";
    return null;
  }
  if (values.length > MAX_COMPARE) {
    $("compare-error").textContent = `at most ${MAX_COMPARE} values`;
    return null;
  }
  return values;
}

function messages() {
  const out = [];
  const system = $("system").value.trim();
  if (system) out.push({ role: "system", content: system });
  out.push({ role: "user", content: $("message").value });
  return out;
}

function intOrNull(id) {
  const raw = $(id).value.trim();
  if (raw === "") return null;
  const x = Number(raw);
  return Number.isInteger(x) ? x : NaN;
}

function requestBase() {
  // The request without warmth, exactly as sent (and as the code snippets show it).
  const body = { model: state.model || "MODEL", messages: messages() };
  body.temperature = Number($("temperature").value || "0");
  const maxTokens = intOrNull("max-tokens");
  if (maxTokens !== null) body.max_tokens = maxTokens;
  const seed = intOrNull("seed");
  if (seed !== null) body.seed = seed;
  return body;
}

// -- code snippets ------------------------------------------------------------------------------------------------
function shellQuote(s) {
  return "'" + s.replace(/'/g, "'\\''") + "'";
}

function pyString(s) {
  // A JSON string is a Python string literal (same quotes and escapes).
  return JSON.stringify(s);
}

function curlSnippet(base, values, keyed) {
  const url = `${location.origin}/v1/chat/completions`;
  const auth = keyed ? ` \\\n  -H "Authorization: Bearer $STEERWARM_API_KEY"` : "";
  const head = `curl ${url} \\\n  -H 'Content-Type: application/json'${auth}`;
  if (values.length === 1) {
    return `${head} \\\n  -d ${shellQuote(JSON.stringify({ ...base, warmth: values[0] }))}`;
  }
  // One request per warmth value, sent together (the server batches them).
  const json = JSON.stringify({ ...base, warmth: 12345 }).split("12345");
  const body = shellQuote(json[0]) + '"$w"' + shellQuote(json[1]);
  return `for w in ${values.join(" ")}; do\n  ${head.replace(/\n/g, "\n  ")} \\\n    -d ${body} &\ndone; wait`;
}

function pythonSnippet(base, values, keyed) {
  const args = [`    model=${pyString(base.model)},`, "    messages=[",
    ...base.messages.map((m) => `        {"role": ${pyString(m.role)}, "content": ${pyString(m.content)}},`),
    "    ],", `    temperature=${base.temperature},`];
  if (base.max_tokens !== undefined) args.push(`    max_tokens=${base.max_tokens},`);
  if (base.seed !== undefined) args.push(`    seed=${base.seed},`);
  const key = keyed ? 'os.environ["STEERWARM_API_KEY"]' : '"none"';
  const lines = [keyed ? "import os\n" : "", "from openai import OpenAI\n\n",
    `client = OpenAI(base_url=${pyString(location.origin + "/v1")}, api_key=${key})\n`];
  const call = (w, indent) => [
    `${indent}reply = client.chat.completions.create(`,
    ...args.map((a) => indent + a),
    `${indent}    extra_body={"warmth": ${w}},`,
    `${indent})`,
    `${indent}steering = reply.model_extra["steering"]`,
    `${indent}print(steering["warmth"], steering["warmth_projection"], reply.choices[0].message.content)`,
  ].join("\n");
  if (values.length === 1) lines.push(call(values[0], ""));
  else lines.push(`for warmth in [${values.join(", ")}]:\n${call("warmth", "    ")}`);
  return lines.join("") + "\n";
}

function update() {
  $("warmth-value").textContent = fmt(Number($("warmth").value));
  $("base-url").textContent = location.origin + "/v1";
  const values = warmthValues() || [0];
  const base = requestBase();
  const keyed = $("key").value.trim() !== "";
  $("snippet-curl").textContent = curlSnippet(base, values, keyed);
  $("snippet-python").textContent = pythonSnippet(base, values, keyed);
}

// -- answers ------------------------------------------------------------------------------------------------------
class Answer {
  constructor(warmth) {
    const node = $("answer-template").content.firstElementChild.cloneNode(true);
    this.node = node;
    this.warmth = warmth;
    node.dataset.warmth = String(warmth);
    node.classList.add(warmth > 0 ? "warm" : warmth < 0 ? "cold" : "base");
    node.querySelector(".answer-warmth").textContent = `warmth ${fmt(warmth)}`;
    this.text = node.querySelector(".answer-text");
    this.start = performance.now();
    this.firstToken = null;
    this.tokens = null;
    this.projection = null;
    this.finish = null;
    $("answers").appendChild(node);
  }

  append(text) {
    if (this.firstToken === null) this.firstToken = performance.now();
    this.text.textContent += text;
    this.setState("streaming…");
  }

  setState(text) {
    this.node.querySelector(".answer-state").textContent = text;
  }

  fail(message) {
    const el = this.node.querySelector(".answer-error");
    el.hidden = false;
    el.textContent = message;
    this.end("error");
  }

  end(stateText) {
    const seconds = (performance.now() - this.start) / 1000;
    this.setState(stateText);
    this.node.dataset.state = stateText;
    this.node.setAttribute("aria-busy", "false");
    if (this.tokens !== null) {
      this.node.querySelector(".tokens").textContent = `${this.tokens} tokens`;
      this.node.querySelector(".speed").textContent = `${(this.tokens / seconds).toFixed(1)} tok/s`;
    }
    this.node.querySelector(".elapsed").textContent = `${seconds.toFixed(2)} s`;
  }

  gauge(scale) {
    // The warmth projection as a bar from the centre (0), on a scale shared by the answers on screen.
    const value = this.projection;
    const el = this.node.querySelector(".gauge");
    const fill = el.querySelector(".gauge-fill");
    if (value === null || value === undefined) {
      el.querySelector(".gauge-value").textContent = "n/a";
      return;
    }
    const half = Math.min(Math.abs(value) / scale, 1) * 50;
    fill.style.left = value >= 0 ? "50%" : `${50 - half}%`;
    fill.style.width = `${half}%`;
    fill.classList.toggle("warm", value > 0);
    fill.classList.toggle("cold", value < 0);
    el.setAttribute("aria-valuemin", String(-scale));
    el.setAttribute("aria-valuemax", String(scale));
    el.setAttribute("aria-valuenow", String(value));
    el.querySelector(".gauge-value").textContent = value.toFixed(3);
    el.querySelector(".gauge-label").textContent = `warmth projection (bar: ±${scale})`;
    el.dataset.value = String(value);
  }
}

function niceScale(values) {
  const biggest = Math.max(0.1, ...values.map((v) => Math.abs(v)));
  for (const step of [0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10]) if (biggest <= step) return step;
  return biggest;
}

async function streamAnswer(body, answer, signal) {
  let resp;
  try {
    resp = await fetch("/v1/chat/completions", {
      method: "POST", headers: authHeaders(), body: JSON.stringify(body), signal,
    });
    if (!resp.ok) {
      answer.fail(await errorMessage(resp));
      return;
    }
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") {
            answer.end(answer.finish === "length" ? "done (max tokens)" : "done");
            return;
          }
          const chunk = JSON.parse(data);
          if (chunk.error) {
            answer.fail(`Error: ${chunk.error.message}`);
            return;
          }
          for (const choice of chunk.choices || []) {
            if (choice.delta && choice.delta.content) answer.append(choice.delta.content);
            if (choice.finish_reason) answer.finish = choice.finish_reason;
          }
          if (chunk.usage) answer.tokens = chunk.usage.completion_tokens;
          if (chunk.steering) answer.projection = chunk.steering.warmth_projection;
        }
      }
    }
    answer.fail("Error: the stream ended before [DONE]");
  } catch (err) {
    if (err.name === "AbortError") answer.end("stopped");
    else answer.fail(`Cannot reach the server: ${err.message}`);
  }
}

async function send() {
  if (state.controller) return;
  const controller = new AbortController();
  state.controller = controller;
  try {
    await sendWith(controller);
  } finally {
    state.controller = null;
    $("send").disabled = false;
    $("stop").disabled = true;
  }
}

async function sendWith(controller) {
  $("form-error").textContent = "";
  const values = warmthValues();
  if (values === null) {
    $("compare").focus();
    return;
  }
  if ($("message").value.trim() === "") {
    $("form-error").textContent = "Write a message first.";
    $("message").focus();
    return;
  }
  const base = requestBase();
  if (Number.isNaN(base.max_tokens) || Number.isNaN(base.seed)) {
    $("form-error").textContent = "Max tokens and seed must be whole numbers.";
    return;
  }
  if (!state.model) await loadModel();  // e.g. after the key was fixed
  base.model = state.model || base.model;
  Object.assign(base, { stream: true, stream_options: { include_usage: true } });
  $("answers").textContent = "";
  $("answers-empty").hidden = true;
  $("send").disabled = true;
  $("stop").disabled = false;
  const answers = values.map((w) => new Answer(w));
  // All requests leave together, so the server decodes them in one batch.
  await Promise.all(answers.map((a) => streamAnswer({ ...base, warmth: a.warmth }, a, controller.signal)));
  const scale = niceScale(answers.map((a) => a.projection).filter((v) => typeof v === "number"));
  answers.forEach((a) => a.gauge(scale));
  $("answers").dataset.done = String(Date.now());
}

function useKey() {
  sessionStorage.setItem(KEY_STORE, $("key").value.trim());
  loadModel();
}

// -- wiring -------------------------------------------------------------------------------------------------------
function init() {
  $("key").value = sessionStorage.getItem(KEY_STORE) || "";
  $("form").addEventListener("submit", (e) => { e.preventDefault(); send(); });
  $("form").addEventListener("input", update);
  $("form").addEventListener("change", () => { showMode(); update(); });
  $("key").addEventListener("change", useKey);
  $("message").addEventListener("keydown", (e) => {
    // Enter sends (Ctrl+Enter is handled below, for every field); Shift+Enter is a new line.
    if (e.key === "Enter" && !e.shiftKey && !e.ctrlKey && !e.metaKey && !e.isComposing) { e.preventDefault(); send(); }
  });
  $("key").addEventListener("keydown", (e) => {
    // Enter in the key field connects with it (it does not send a message).
    if (e.key === "Enter" && !e.ctrlKey && !e.metaKey) { e.preventDefault(); useKey(); }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); send(); }
  });
  $("stop").addEventListener("click", () => { if (state.controller) state.controller.abort(); });
  for (const button of document.querySelectorAll("button.copy")) {
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText($(button.dataset.copy).textContent);
        button.textContent = "Copied";
      } catch (_) {
        button.textContent = "Select and copy";
      }
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    });
  }
  showMode();
  update();
  loadModel();
}

init();
