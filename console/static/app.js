// Motion Booth operator console. State arrives as server-sent events (/api/events, ~1 per second);
// camera previews are fetched a few times a second with If-None-Match, so unchanged frames cost a 304.
"use strict";

const PREVIEW_INTERVAL_MS = 250;
const STALE_AFTER_S = 5;
const STATE_NAMES = { start: "recording", end: "ended", abort: "aborted", closed: "closed (no end)", failed: "failed" };

let selected = localStorage.getItem("booth.session");
let pendingStart = null; // a session we started whose start event has not come back yet
const previews = new Map(); // camera -> { figure, img, caption, etag, busy }

// --- small helpers -----------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value; // through the CSSOM: the page's CSP allows no inline style
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const num = (v) => (v === null || v === undefined ? "–" : Math.round(v).toLocaleString());
const pct = (v) => (v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)} %`);
const rate = (v) => (v === null || v === undefined ? "–" : v.toFixed(1));

function duration(s) {
  if (s === null || s === undefined) return "–";
  s = Math.max(0, Math.round(s));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

const clock = (t) => (t ? new Date(t * 1000).toLocaleTimeString() : "–");

// replaceChildren without the null/false placeholders of optional parts (it would print "null").
function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

function badge(text, kind) {
  return el("span", { class: `badge ${kind || ""}` }, text);
}

function stateBadge(state) {
  return badge(STATE_NAMES[state] || state || "unknown", `state-${state || "none"}`);
}

function say(text, isError = false) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.classList.toggle("error", isError);
}

function toLogin() {
  window.location.replace("/login");
}

async function api(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
  });
  if (response.status === 401) toLogin(); // the login expired
  let data = {};
  try { data = await response.json(); } catch (_) { /* not JSON: keep the status line */ }
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}

// --- session control ---------------------------------------------------------------------------
document.getElementById("start-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = document.getElementById("start-session");
  const cameras = document.getElementById("f-cameras").value.split(/[\s,]+/).filter(Boolean);
  const consent = document.getElementById("f-consent");
  const body = {
    session: document.getElementById("f-session").value.trim() || null,
    cameras,
    reference: chosenReference,
    consent: consent.checked,
    until_coverage: Number(document.getElementById("f-until").value) / 100,
    max_seconds: Number(document.getElementById("f-max-seconds").value),
  };
  if (!cameras.length) delete body.cameras; // the console's own cameras
  button.disabled = true;
  try {
    const data = await api("/api/sessions", body);
    select(data.session);
    pendingStart = data.session;
    document.getElementById("f-session").value = "";
    consent.checked = false; // every visitor is asked anew
    say(`Session ${data.session} started${body.consent ? " (recording kept: consent)" : " (only the video is kept)"}.`);
  } catch (err) {
    say(`Could not start the session: ${err.message}`, true);
  } finally {
    button.disabled = false;
  }
});

// --- reference dances: a skeleton thumbnail each, animated while chosen ------------------------------
const SKELETON = [[0, 1], [0, 2], [1, 3], [2, 4], [5, 6], [5, 11], [6, 12], [11, 12], [5, 7], [7, 9],
  [6, 8], [8, 10], [11, 13], [13, 15], [12, 14], [14, 16]];
let chosenReference = null;
const danceCache = {};

function drawSkeleton(canvas, pose, size) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const scale = Math.min(canvas.width / size[0], canvas.height / size[1]);
  ctx.strokeStyle = "#d97706";
  ctx.lineWidth = 2;
  for (const [a, b] of SKELETON) {
    if (pose[a][2] < 0.3 || pose[b][2] < 0.3) continue;
    ctx.beginPath();
    ctx.moveTo(pose[a][0] * scale, pose[a][1] * scale);
    ctx.lineTo(pose[b][0] * scale, pose[b][1] * scale);
    ctx.stroke();
  }
}

async function loadReferences() {
  const box = document.getElementById("f-references");
  try {
    const response = await fetch("/api/references", { cache: "no-store" });
    const data = await response.json();
    if (!response.ok) throw new Error(data.error || response.statusText);
    if (!data.references.length) {
      fill(box, el("p", { class: "warning small" }, "No reference dances yet: add one with `booth reference add`."));
      return;
    }
    fill(box, ...data.references.map((r) => {
      const canvas = el("canvas", { width: 96, height: 128 });
      const option = el("div", {
        class: "ref-option", dataset: { reference: r.name }, title: `${r.name}: ${r.frames} frames, ${r.duration_s} s`,
        onclick: () => chooseReference(r.name),
      }, canvas, el("div", { class: "small" }, r.name));
      fetch(r.dance).then((x) => x.json()).then((d) => { danceCache[r.name] = d; drawSkeleton(canvas, d.poses[0], d.size); });
      return option;
    }));
    const preferred = data.references.find((r) => r.default) || data.references[0];
    chooseReference(preferred.name);
  } catch (err) {
    fill(box, el("p", { class: "warning small" }, `Cannot list the dances: ${err.message}`));
  }
}

function chooseReference(name) {
  chosenReference = name;
  document.querySelectorAll(".ref-option").forEach((o) => o.classList.toggle("chosen", o.dataset.reference === name));
}

// The chosen dance plays in its thumbnail: the preview.
setInterval(() => {
  const d = danceCache[chosenReference];
  const option = document.querySelector(".ref-option.chosen canvas");
  if (!d || !option) return;
  const t = d.duration_s > 0 ? (Date.now() / 1000) % d.duration_s : 0;
  let i = 0;
  while (i + 1 < d.times.length && d.times[i + 1] <= t) i += 1;
  drawSkeleton(option, d.poses[i], d.size);
}, 100);

loadReferences();

// --- the booth display ---------------------------------------------------------------------------
document.getElementById("display-link").addEventListener("click", async () => {
  try {
    const data = await api("/api/display-tokens", {});
    fill(document.getElementById("display-url"), "Display link (opens the display only; revocable): ",
      el("a", { href: data.url, target: "_blank", rel: "noopener" }, data.url));
  } catch (err) { say(`Could not make a display link: ${err.message}`, true); }
});
document.getElementById("display-revoke").addEventListener("click", async () => {
  try {
    const data = await api("/api/display-tokens/revoke", {});
    fill(document.getElementById("display-url"), `${data.revoked} display link(s) revoked.`);
  } catch (err) { say(`Could not revoke: ${err.message}`, true); }
});
document.getElementById("display-between").addEventListener("change", async (event) => {
  try { await api("/api/display/between", { show: event.target.value }); } catch (err) { say(err.message, true); }
});

async function endSession(session, abort) {
  if (abort && !confirm(`Abort session ${session}? No dataset and no video will be made.`)) return;
  try {
    await api(`/api/sessions/${encodeURIComponent(session)}/end`, { abort });
    say(`Session ${session} ${abort ? "aborted" : "ended"}.`);
  } catch (err) {
    say(`Could not end the session: ${err.message}`, true);
  }
}

document.getElementById("logout").addEventListener("click", async () => {
  try { await api("/logout", {}); } finally { toLogin(); }
});

function select(session) {
  selected = session;
  localStorage.setItem("booth.session", session);
  if (lastState) render(lastState);
}

// --- previews ----------------------------------------------------------------------------------
function previewFor(camera) {
  let p = previews.get(camera);
  if (p) return p;
  const img = el("img", { alt: `camera ${camera}`, dataset: { camera } });
  const caption = el("figcaption");
  const figure = el("figure", { class: "preview", dataset: { camera } }, img, caption);
  p = { figure, img, caption, etag: null, busy: false };
  previews.set(camera, p);
  return p;
}

async function refreshPreview(camera, p) {
  if (p.busy || document.hidden) return;
  p.busy = true;
  try {
    const headers = p.etag ? { "If-None-Match": p.etag } : {};
    const response = await fetch(`/api/preview/${encodeURIComponent(camera)}.jpg`, { cache: "no-store", headers });
    if (response.status !== 200) return;
    const url = URL.createObjectURL(await response.blob());
    const old = p.img.src;
    p.img.src = url;
    await p.img.decode().catch(() => {});
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    p.etag = response.headers.get("ETag");
    p.img.dataset.session = response.headers.get("X-Frame-Session") || "";
    p.img.dataset.seq = response.headers.get("X-Frame-Seq") || "";
    p.img.dataset.updated = String(Date.now());
  } catch (_) {
    // The server is away for a moment: the event stream shows it; try again on the next tick.
  } finally {
    p.busy = false;
  }
}

setInterval(() => previews.forEach((p, camera) => refreshPreview(camera, p)), PREVIEW_INTERVAL_MS);

function renderPreviews(allCameras) {
  const box = document.getElementById("previews");
  // A camera whose newest frame belongs to a session that stopped recording is not shown: the last
  // visitor's picture does not stay on screen for the next one.
  const recording = new Set((lastState ? lastState.sessions : []).filter((r) => r.state === "start" || r.state === null).map((r) => r.session));
  const cameras = allCameras.filter((c) => recording.has(c.session));
  if (!cameras.length) {
    const text = allCameras.length ? "Waiting for the next visitor." : "No camera frames yet.";
    const empty = box.querySelector(".empty");
    if (!empty || empty.textContent !== text) {
      previews.clear();
      box.replaceChildren(el("p", { class: "empty" }, text));
    }
    return;
  }
  box.querySelector(".empty")?.remove();
  const present = new Set(cameras.map((c) => c.camera));
  for (const [camera, p] of previews) {
    if (!present.has(camera)) {
      p.figure.remove();
      previews.delete(camera);
    }
  }
  for (const cam of cameras) {
    const p = previewFor(cam.camera);
    if (!p.figure.isConnected) box.append(p.figure);
    const stale = cam.age_s > STALE_AFTER_S;
    p.figure.classList.toggle("stale", stale);
    fill(p.caption,
      el("strong", {}, cam.camera),
      el("span", { class: "muted" }, ` ${cam.session} · #${cam.seq} · ${cam.width}×${cam.height}`),
      el("span", { class: "badges" },
        stale ? badge(`idle ${duration(cam.age_s)}`, "grey") : null,
        !cam.posed ? badge("no pose yet", "grey") : !cam.person ? badge("no person", "grey") : badge("pose", "ok"),
        cam.imputed ? badge(`${cam.imputed} imputed`, "amber") : null,
        cam.outlier ? badge(`${cam.outlier} outlier`, "red") : null),
    );
  }
}

// --- the selected session ----------------------------------------------------------------------
function tile(label, value, cls) {
  return el("div", { class: `tile ${cls || ""}` }, el("div", { class: "value" }, value), el("div", { class: "label" }, label));
}

function trainingBlock(t) {
  if (!t) return el("p", { class: "muted" }, "Training has not started.");
  const fraction = t.fraction === null ? 0 : t.fraction;
  const losses = Object.entries(t.losses || {}).slice(0, 4).map(([k, v]) => `${k} ${Number(v).toPrecision(3)}`).join(" · ");
  return el("div", { class: "training" },
    el("div", { class: `bar phase-${t.phase}` }, el("div", { class: "fill", style: `width: ${(100 * fraction).toFixed(1)}%` })),
    el("div", { class: "progress-text" },
      el("strong", {}, t.phase),
      ` · step ${num(t.step)} / ${num(t.total_steps)}`,
      t.phase === "done" || t.phase === "failed" ? null : ` · ETA ${duration(t.eta_s)}`),
    ...(t.notices || []).map(noticeBlock),
    losses ? keptOpen(el("details", { class: "muted small losses" }, el("summary", {}, "details"), losses), "losses") : null);
}

// A trainer warning in an operator's words (tools.warning_words); the trainer's own text behind "details".
function noticeBlock(n) {
  return el("div", { class: `notice small ${n.affects_video ? "warning" : "muted"}`, dataset: { kinds: n.kinds.join(" ") } },
    el("p", { class: "notice-words" }, `${n.affects_video ? "⚠" : "ⓘ"} ${n.words}`),
    keptOpen(el("details", { class: "muted" }, el("summary", {}, "details"), el("code", { class: "notice-details" }, n.details)), n.details));
}

// The card is redrawn every second: a "details" the operator opened stays open.
const openDetails = new Set();
function keptOpen(details, key) {
  details.open = openDetails.has(key);
  details.addEventListener("toggle", () => (details.open ? openDetails.add(key) : openDetails.delete(key)));
  return details;
}

// Figures of the rendition: the dance it shows (trainer.fidelity), then the held-out ones
// (trainer.evaluation), person box first, it is where the work is.
function qualityBlock(q) {
  if (!q || (q.box_psnr === undefined && q.dance_person_found === undefined)) return null;
  const f = (v, d) => (v === undefined || v === null ? "–" : Number(v).toFixed(d));
  const pct = (v) => (v === undefined || v === null ? "–" : `${Math.round(100 * v)}%`);
  const dance = q.dance_person_found === undefined ? [] : [
    tile("dance limb error (mean / p90, torso lengths)", `${f(q.dance_limb_error, 2)} / ${f(q.dance_limb_error_p90, 2)}`
      + (q.dance_limb_floor === undefined || q.dance_limb_floor === null ? "" : ` (floor ${f(q.dance_limb_floor, 2)})`),
      q.dance_limb_error > 0.15 ? "warn" : ""),
    tile("dance facing agreement", pct(q.dance_facing_agreement), q.dance_facing_agreement < 0.9 ? "warn" : ""),
    tile("dance frames with a person", pct(q.dance_person_found), q.dance_person_found < 0.9 ? "warn" : ""),
  ];
  if (q.box_psnr === undefined) return el("div", { class: "tiles quality" }, ...dance);
  return el("div", { class: "tiles quality" },
    ...dance,
    tile("person box SSIM / PSNR", `${f(q.box_ssim, 3)} / ${f(q.box_psnr, 1)} dB`),
    tile("whole frame SSIM / PSNR", `${f(q.ssim, 3)} / ${f(q.psnr, 1)} dB`),
    tile("flicker (1 = real)", f(q.flicker, 2), q.flicker > 1.5 ? "warn" : ""),
    tile("pose error", f(q.pose_error, 3)),
    tile("held-out frames", f(q.held_out, 0)));
}

// The quality curve: person-box PSNR of each version of the video, oldest first (an inline SVG).
function versionsBlock(r) {
  const points = (r.versions || []).filter((v) => v.box_psnr !== undefined && v.box_psnr !== null);
  const latest = (r.versions || [])[r.versions.length - 1];
  const said = latest ? `version ${latest.version} (${latest.kind}${latest.final ? ", final" : ", better ones follow"})` : "";
  if (points.length < 2) return el("p", { class: "muted small versions" }, said);
  const w = 240, h = 60, pad = 6;
  const ys = points.map((v) => v.box_psnr);
  const lo = Math.min(...ys), hi = Math.max(...ys) > lo ? Math.max(...ys) : lo + 1;
  const xy = points.map((v, i) => [pad + (i * (w - 2 * pad)) / (points.length - 1), h - pad - ((v.box_psnr - lo) * (h - 2 * pad)) / (hi - lo)]);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "curve");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", xy.map((p) => p.map((c) => c.toFixed(1)).join(",")).join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "currentColor");
  line.setAttribute("stroke-width", "2");
  svg.appendChild(line);
  for (const [x, y] of xy) {
    const dot = document.createElementNS(ns, "circle");
    dot.setAttribute("cx", x.toFixed(1));
    dot.setAttribute("cy", y.toFixed(1));
    dot.setAttribute("r", "3");
    svg.appendChild(dot);
  }
  const range = `person-box PSNR ${ys[0].toFixed(1)} → ${ys[ys.length - 1].toFixed(1)} dB over ${points.length} versions`;
  return el("div", { class: "versions" }, el("p", { class: "muted small" }, said), svg, el("p", { class: "muted small" }, range));
}

function renditionBlock(row) {
  const r = row.rendition;
  const video = el("video", { src: r.url, controls: true, autoplay: true, muted: true, loop: true, playsinline: true });
  video.muted = true; // browsers autoplay only muted videos
  return el("div", { class: "rendition", dataset: { url: r.url } },
    video,
    el("div", { class: "share" },
      el("img", { class: "qr", src: r.qr_svg, alt: "QR code of the video link" }),
      el("p", { class: "small" }, "Scan to take the video home"),
      el("a", { class: "rendition-link", href: r.link, target: "_blank", rel: "noopener" }, "Open the video"),
      el("p", { class: "muted small" }, el("code", { class: "share-link" }, r.link)),
      el("p", { class: "muted small" }, `${num(r.frames)} frames`)));
}

function renderDetail(row) {
  const box = document.getElementById("detail");
  if (!row) {
    const text = pendingStart ? `Starting session ${pendingStart}…` : "No session yet. Start one above.";
    fill(box, el("h2", {}, "Session"), el("p", { class: "empty" }, text));
    return;
  }
  const dataset = row.dataset ? `${row.dataset.status} · ${num(row.dataset.samples)}` : "–";
  // Rebuilding the video each second would restart it: keep it while the link stays the same.
  const oldRendition = box.querySelector(".rendition");
  const keep = row.rendition && oldRendition && oldRendition.dataset.url === row.rendition.url ? oldRendition : null;
  fill(box,
    el("h2", {}, "Session ", el("code", { class: "session-id" }, row.session), " ",
      stateBadge(row.failure ? "failed" : row.state)),
    row.failure ? el("p", { class: "failure", id: "failure" }, row.failure) : null,
    el("p", { class: "muted" },
      `cameras ${row.cameras.join(", ") || "–"} · reference ${row.reference || "–"} · started ${clock(row.started_at)}`),
    el("p", { class: "muted small consent" },
      row.consent === true ? "consent: the recording is kept per the retention policy"
        : row.consent === false ? "no consent: only the video is kept once it is made" : "consent: not recorded"),
    el("p", { id: "status-line", class: "status-line" }, row.status_line || ""),
    coverageBlock(row.coverage),
    row.take && row.take.cameras && !row.take.cameras.running && row.state === "start"
      ? el("p", { class: "warning small" }, `the cameras stopped (exit ${row.take.cameras.exit_code}; log ${row.take.cameras.log})`) : null,
    el("div", { class: "tiles" },
      tile("frames", num(row.frames)),
      tile("poses", num(row.poses)),
      tile("imputed", pct(row.imputed_share), row.imputed_share > 0.2 ? "warn" : ""),
      tile("dataset", dataset, row.dataset && row.dataset.status === "failed" ? "bad" : "")),
    el("h3", {}, "Training"),
    trainingBlock(row.training),
    row.rendition ? el("h3", {}, "Video") : null,
    row.rendition ? keep || renditionBlock(row) : null,
    row.rendition ? versionsBlock(row.rendition) : null,
    row.rendition ? qualityBlock(row.rendition.quality) : null,
    row.state === "start"
      ? el("div", { class: "actions" },
          el("button", { id: "end-session", class: "primary", onclick: () => endSession(row.session, false) }, "End session"),
          el("button", { id: "abort-session", class: "danger", onclick: () => endSession(row.session, true) }, "Abort"))
      : null,
  );
}

function coverageBlock(c) {
  if (!c) return null;
  const cams = Object.entries(c.cameras || {}).map(([k, v]) => `${k} ${pct(v.coverage)}`).join(" · ");
  return el("div", { class: "coverage", id: "coverage" },
    el("strong", {}, `dance covered ${pct(c.coverage)}`),
    c.target ? ` of ${pct(c.target)}` : "",
    ` · facings ${c.facings.join(", ") || "none yet"}`,
    c.done ? ` · ${{ target: "ended at the target", "time cap": "ended at the time cap", ended: "ended by the operator" }[c.reason] || c.reason}` : "",
    c.prompts.length ? el("div", { class: "small" }, `display asks: ${c.prompts.join("; ")}`) : null,
    cams ? el("div", { class: "muted small" }, cams) : null);
}

// --- tables ------------------------------------------------------------------------------------
function renderSessions(rows) {
  const body = document.querySelector("#sessions tbody");
  if (!rows.length) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 9, class: "empty" }, "No sessions yet.")));
    return;
  }
  body.replaceChildren(...rows.map((r) => el("tr", {
    class: r.session === selected ? "selected" : "", dataset: { session: r.session },
    onclick: () => select(r.session), title: "show this session",
  },
    el("td", {}, el("code", {}, r.session)),
    el("td", { title: r.failure || "" }, stateBadge(r.failure ? "failed" : r.state)),
    el("td", {}, r.cameras.join(", ") || "–"),
    el("td", { class: "num" }, num(r.frames)),
    el("td", { class: "num" }, num(r.poses)),
    el("td", { class: "num" }, pct(r.imputed_share)),
    el("td", { class: "num" }, r.coverage ? pct(r.coverage.coverage) : "–"),
    el("td", { class: "status" }, r.status_line || "–"),
    el("td", {}, r.rendition ? el("a", { href: r.rendition.link, target: "_blank", rel: "noopener" }, "video") : "–"))));
}

function renderPipeline(pipeline, errors) {
  const body = document.querySelector("#pipeline tbody");
  body.replaceChildren(...pipeline.stages.map((s) => el("tr", {},
    el("td", {}, s.stage),
    el("td", {}, s.component === null ? "–" : el("span", { class: `dot ${s.up ? "up" : "off"}`, title: s.up ? "" : "no metrics from it: off, or the stage is down (see its throughput)" }, `${s.component} ${s.up ? "up" : "no metrics"}`)),
    el("td", { class: "num" }, num(s.total)),
    el("td", { class: "num" }, rate(s.rate)),
    el("td", { class: `num ${s.deadletters ? "bad" : ""}` }, num(s.deadletters)))));
  const notes = document.getElementById("pipeline-notes");
  const dead = pipeline.deadletters;
  fill(notes,
    lastState && !lastState.ready ? el("p", { class: "muted" }, `Waiting for the broker at ${lastState.broker}…`) : null,
    pipeline.drops && pipeline.drops.total !== null
      ? el("p", {}, `camera drops: ${num(pipeline.drops.total)} (${rate(pipeline.drops.rate)}/s)`) : null,
    el("p", {}, `dead letters: ${num(dead.total)}`),
    ...dead.last.slice(-3).reverse().map((d) => el("p", { class: "small bad" }, `[${d.stage}] ${d.reason}`)),
    pipeline.invalid_control_messages ? el("p", { class: "small bad" }, `${pipeline.invalid_control_messages} unreadable control messages`) : null,
    ...errors.map((e) => el("p", { class: "small bad" }, e)));
}

// --- the live state ----------------------------------------------------------------------------
let lastState = null;
let camerasOffered = false;

function render(state) {
  lastState = state;
  renderPreviews(state.cameras);
  const rows = state.sessions;
  if (pendingStart && rows.some((r) => r.session === pendingStart)) pendingStart = null;
  let row = rows.find((r) => r.session === selected);
  if (!row && !pendingStart && rows.length) {
    row = rows[0];
    selected = row.session;
  }
  renderDetail(row);
  renderSessions(rows);
  renderPipeline(state.pipeline, state.errors);
  // Offer the cameras that are sending, once: after that the field is the operator's.
  const cams = document.getElementById("f-cameras");
  if (!camerasOffered && !cams.value && document.activeElement !== cams && state.cameras.length) {
    cams.value = state.cameras.filter((c) => c.age_s <= STALE_AFTER_S).map((c) => c.camera).join(", ");
    camerasOffered = cams.value !== "";
  }
}

function setConnected(live) {
  const pill = document.getElementById("conn");
  pill.textContent = live ? "live" : "reconnecting…";
  pill.className = `pill ${live ? "on" : "off"}`;
}

function connect() {
  const source = new EventSource("/api/events");
  source.onmessage = (event) => {
    setConnected(true);
    render(JSON.parse(event.data));
  };
  source.onerror = async () => {
    setConnected(false); // EventSource reconnects by itself, unless the login has expired
    try {
      if ((await fetch("/api/state", { cache: "no-store" })).status === 401) toLogin();
    } catch (_) { /* the server is away: keep trying */ }
  };
}

connect();
