// The lmwatch console: polls /status, renders the fleet, acts through /admin with the operator's token.
// No framework and no build step; every value goes into the page as text, never as HTML.
"use strict";

const params = new URLSearchParams(location.search);
const INTERVAL_MS = Math.max(200, Number(params.get("interval") || 1000));
const KNOWN = new Set(["version", "ready", "generation", "backends", "host", "requests"]);
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

function fill(tableId, rows, empty) {
  const body = $(tableId).tBodies[0];
  const columns = $(tableId).tHead.rows[0].cells.length;
  body.replaceChildren(...(rows.length ? rows : [el("tr", { class: "empty" }, el("td", { colspan: columns }, empty))]));
}

const bytes = (n) => (n == null ? "-" : n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(1)} GiB` : `${(n / 2 ** 20).toFixed(0)} MiB`);
const pct = (r) => (r == null ? "-" : `${Math.round(r * 100)} %`);
const secs = (s) => (s == null ? "-" : s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(2)} s`);
const num = (n, digits = 1) => (n == null ? "-" : Number(n).toFixed(digits));
const badge = (state) => el("span", { class: `badge ${state}` }, state);

function token() {
  return sessionStorage.getItem("lmwatch-admin-token") || "";
}

async function admin(method, path, body) {
  const headers = { Accept: "application/json" };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(data?.error?.message || `HTTP ${resp.status}`);
  return data;
}

async function act(label, method, path, body) {
  try {
    await admin(method, path, body);
    say(`${label}: done`);
    refresh();
  } catch (err) {
    say(`${label}: ${err.message}`, true);
  }
}

function say(text, error = false) {
  $("message").textContent = text;
  $("message").className = error ? "error" : "";
}

const seg = encodeURIComponent;

function worstBreaker(breakers) {
  const states = breakers.map((b) => b.state);
  return ["open", "half_open"].find((s) => states.includes(s)) || "closed";
}

function render(status) {
  const req = status.requests || {};
  const breakers = req.breakers || [];
  const speeds = new Map((req.speeds || []).map((s) => [`${s.backend}\u0000${s.model}`, s]));
  $("version").textContent = `v${status.version}${status.ready ? "" : " (starting)"}`;

  fill("backends", status.backends.map((b) => {
    const mine = breakers.filter((x) => x.backend === b.name);
    const loaded = b.models.filter((m) => m.loaded);
    const stale = loaded.some((m) => m.stale) ? " (stale)" : "";
    return el("tr", { "data-backend": b.name, "data-health": b.health, title: b.reason || "" },
      el("td", {}, b.name),
      el("td", {}, badge(b.health), b.draining ? el("span", { class: "badge draining" }, "draining") : ""),
      el("td", {}, [b.flavour, b.version].filter(Boolean).join(" ") || "-"),
      el("td", {}, `${loaded.length}${stale}`),
      el("td", {}, req.inflight?.[b.name] ?? 0),
      el("td", {}, req.queued?.[b.name] ?? 0),
      el("td", {}, badge(worstBreaker(mine))),
      el("td", {}, secs(b.probe_duration_seconds)),
      el("td", {}, el("button", {
        class: "action", "aria-label": `${b.draining ? "undrain" : "drain"} ${b.name}`,
        onclick: () => act(`${b.draining ? "undrain" : "drain"} ${b.name}`, "POST",
          `/admin/backends/${seg(b.name)}/${b.draining ? "undrain" : "drain"}`),
      }, b.draining ? "undrain" : "drain")),
    );
  }), "no backends configured");

  fill("models", status.backends.flatMap((b) => b.models.map((m) => {
    const speed = speeds.get(`${b.name}\u0000${m.id}`) || {};
    const state = m.stale ? "stale" : m.loaded ? "loaded" : "not loaded";
    const verb = m.loaded ? "unload" : "load";
    return el("tr", { "data-backend": b.name, "data-model": m.id, "data-state": state },
      el("td", {}, b.name),
      el("td", {}, m.id),
      el("td", {}, m.model_type),
      el("td", {}, badge(state.replace(" ", "-"))),
      el("td", {}, m.loaded_context_length || m.max_context_length
        ? `${m.loaded_context_length ?? "-"} / ${m.max_context_length ?? "-"}` : "-"),
      el("td", {}, m.parallel ?? "-"),
      el("td", {}, num(speed.tokens_per_second)),
      el("td", {}, secs(speed.ttft_seconds)),
      el("td", {}, b.flavour === "lmstudio-v1" ? el("button", {
        class: "action", "aria-label": `${verb} ${m.id} on ${b.name}`,
        onclick: () => act(`${verb} ${m.id}`, "POST", `/admin/backends/${seg(b.name)}/models/${verb}`, { model: m.id }),
      }, verb) : ""),
    );
  })), "no models known");

  const host = status.host || {};
  $("host").textContent = `CPU load ${pct(host.cpu_load_ratio)} per CPU; memory ${bytes(host.memory_available_bytes)} ` +
    `available of ${bytes(host.memory_total_bytes)}`;
  fill("gpus", (host.gpus || []).map((g) => {
    const used = g.memory_total_bytes - g.memory_free_bytes;
    const meter = el("meter", { min: 0, max: g.memory_total_bytes, value: used });
    return el("tr", { "data-gpu": g.index },
      el("td", {}, g.index), el("td", {}, g.name),
      el("td", {}, meter, ` ${bytes(used)} / ${bytes(g.memory_total_bytes)}`),
      el("td", {}, pct(g.utilization_ratio)));
  }), "no GPU seen");

  fill("breakers", breakers.filter((b) => b.state !== "closed").map((b) =>
    el("tr", { "data-backend": b.backend },
      el("td", {}, b.backend), el("td", {}, b.model), el("td", {}, badge(b.state)),
      el("td", {}, b.failures), el("td", {}, b.reason))), "all closed");

  fill("requests", (req.recent || []).map((r) =>
    el("tr", { "data-backend": r.backend },
      el("td", {}, new Date(r.time * 1000).toLocaleTimeString()), el("td", {}, r.backend), el("td", {}, r.model),
      el("td", {}, r.task), el("td", {}, r.route), el("td", {}, r.code), el("td", {}, secs(r.duration_seconds)),
      el("td", {}, secs(r.ttft_seconds)), el("td", {}, r.output_tokens))), "no requests yet");

  const more = Object.entries(status).filter(([key]) => !KNOWN.has(key));
  $("more").replaceChildren(...more.map(([key, value]) =>
    el("details", { "data-section": key, open: "" }, el("summary", {}, key), tree(value))));
  $("more-section").hidden = more.length === 0;
}

function tree(value) {
  // Any other /status section (cache, usage, control...): nested keys as a definition list.
  if (value === null || typeof value !== "object") return document.createTextNode(String(value ?? "-"));
  if (Array.isArray(value) && value.every((v) => v === null || typeof v !== "object")) {
    return document.createTextNode(value.join(", ") || "-");
  }
  const list = el("dl");
  for (const [key, child] of Object.entries(value)) list.append(el("dt", {}, key), el("dd", {}, tree(child)));
  return list;
}

let timer = null;

async function refresh() {
  clearTimeout(timer);
  try {
    const resp = await fetch("/status", { cache: "no-store", headers: { Accept: "application/json" } });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    render(await resp.json());
    $("connection").textContent = "live";
    $("connection").className = "badge up";
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    $("connection").textContent = `disconnected (${err.message})`;
    $("connection").className = "badge down";
  }
  timer = setTimeout(refresh, INTERVAL_MS);
}

async function explain(event) {
  event.preventDefault();
  const prompt = $("prompt").value.trim() || $("prompt").placeholder;
  const out = $("explanation");
  try {
    const data = await admin("POST", "/admin/route/explain", { model: "auto", messages: [{ role: "user", content: prompt }] });
    const chosen = data.chosen ? `${data.chosen.backend} / ${data.chosen.model}` : `none (${data.unavailable || "no usable candidate"})`;
    out.replaceChildren(
      el("p", { id: "explain-task" }, `task: ${data.task} (from the ${data.task_source})`,
        data.task_reasons.length ? ` because ${data.task_reasons.join(", ")}` : ""),
      el("ol", { id: "explain-candidates" }, ...data.candidates.map((c) =>
        el("li", { class: c.usable ? "" : "skipped" }, `${c.backend} / ${c.model}: ${c.reason}`))),
      el("p", { id: "explain-chosen" }, `chosen: ${chosen}`),
      ...data.excluded.map((x) => el("p", { class: "excluded" }, `not considered: ${x.backend} (${x.reason})`)),
    );
  } catch (err) {
    out.replaceChildren(el("p", { class: "error" }, err.message));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("token").value = token();
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("lmwatch-admin-token", $("token").value.trim());
    say($("token").value.trim() ? "admin token set for this tab" : "admin token cleared");
  });
  $("explain-form").addEventListener("submit", explain);
  refresh();
});
