// The booth display: the reference dance and the visitor's live skeleton, both mirrored (the
// visitor copies the dancer as in a mirror, which gives the camera the dance's own poses), a
// countdown, the coverage meter and prompts; between sessions the last video or an attract loop.
// Every server event is the whole state, so after a lost connection the first event catches up.
"use strict";

const SKELETON = [[0, 1], [0, 2], [1, 3], [2, 4], [5, 6], [5, 11], [6, 12], [11, 12], [5, 7], [7, 9],
  [6, 8], [8, 10], [11, 13], [13, 15], [12, 14], [14, 16]];
const MIN_SCORE = 0.3;
const dances = {}; // reference name -> dance.json
let state = null;
let clockOffset = 0; // server time - local time, seconds
let lastEvent = 0;

const $ = (id) => document.getElementById(id);

function drawPose(canvas, keypoints, width, height, colour) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!keypoints) return;
  const scale = Math.min(canvas.width / width, canvas.height / height);
  const ox = (canvas.width - width * scale) / 2;
  const oy = (canvas.height - height * scale) / 2;
  const at = (k) => [canvas.width - (ox + k[0] * scale), oy + k[1] * scale]; // mirrored
  ctx.lineWidth = Math.max(3, canvas.width / 80);
  ctx.lineCap = "round";
  ctx.strokeStyle = colour;
  for (const [a, b] of SKELETON) {
    const ka = keypoints[a], kb = keypoints[b];
    if (ka[2] < MIN_SCORE || kb[2] < MIN_SCORE) continue;
    const [x1, y1] = at(ka), [x2, y2] = at(kb);
    ctx.beginPath(); ctx.moveTo(x1, y1); ctx.lineTo(x2, y2); ctx.stroke();
  }
  ctx.fillStyle = colour;
  for (const k of keypoints) {
    if (k[2] < MIN_SCORE) continue;
    const [x, y] = at(k);
    ctx.beginPath(); ctx.arc(x, y, ctx.lineWidth, 0, 2 * Math.PI); ctx.fill();
  }
}

async function danceOf(name) {
  if (!name) return null;
  if (!(name in dances)) {
    dances[name] = null;
    try {
      const r = await fetch(`/api/references/${encodeURIComponent(name)}/dance.json`, { cache: "no-store" });
      if (r.ok) dances[name] = await r.json(); else delete dances[name];
    } catch (e) { delete dances[name]; }
  }
  return dances[name];
}

function frameAt(dance, seconds) {
  const t = dance.duration_s > 0 ? seconds % dance.duration_s : 0;
  let i = 0;
  while (i + 1 < dance.times.length && dance.times[i + 1] <= t) i += 1;
  return i;
}

function serverNow() { return Date.now() / 1000 + clockOffset; }

function renderMeter(cov, target) {
  const share = cov ? cov.coverage : 0;
  $("meter").dataset.coverage = String(share);
  $("meter-fill").style.width = `${Math.round(share * 100)}%`;
  $("meter-target").style.left = `${Math.round((target || 0) * 100)}%`;
  $("meter-target").hidden = !target;
  $("meter-text").textContent = cov ? `${Math.round(share * 100)}%` + (target ? ` of ${Math.round(target * 100)}%` : "") : "waiting for poses…";
  const facings = $("facings");
  facings.replaceChildren();
  const wanted = cov ? (cov.dance_facings.length ? cov.dance_facings : ["front"]) : [];
  for (const f of wanted) {
    const chip = document.createElement("span");
    chip.className = `chip ${cov.facings.includes(f) ? "done" : ""}`;
    chip.textContent = f;
    facings.append(chip);
  }
  const prompts = $("prompts");
  prompts.replaceChildren(...(cov ? cov.prompts : []).map((p) => {
    const li = document.createElement("li"); li.textContent = p; return li;
  }));
}

function renderCountdown(s) {
  const el = $("countdown");
  const elapsed = serverNow() - s.started_at;
  const countdown = state.countdown_s || 0;
  if (elapsed < countdown) {
    el.textContent = String(Math.ceil(countdown - elapsed));
    el.className = "display-countdown big";
  } else if (s.max_seconds) {
    el.textContent = `${Math.max(0, Math.ceil(s.max_seconds - elapsed))} s`;
    el.className = "display-countdown";
  } else {
    el.textContent = "";
  }
}

async function tick() {
  if (state && state.session) {
    const s = state.session;
    const dance = await danceOf(s.reference);
    if (dance) {
      // The dance waits on its first pose through the countdown, then plays on a loop.
      const i = frameAt(dance, Math.max(0, serverNow() - s.started_at - (state.countdown_s || 0)));
      drawPose($("dance"), dance.poses[i], dance.size[0], dance.size[1], "#ffb347");
      $("dance").dataset.frame = String(i);
    }
    renderCountdown(s);
  } else if (state && !state.session && state.between === "attract") {
    const name = Object.keys(dances).find((n) => dances[n]);
    if (name) {
      const d = dances[name];
      drawPose($("attract-dance"), d.poses[frameAt(d, serverNow())], d.size[0], d.size[1], "#ffb347");
    }
  }
  requestAnimationFrame(tick);
}

function render() {
  const s = state.session;
  $("stage").hidden = !s;
  $("between").hidden = !!s;
  $("stage").dataset.mode = s ? "recording" : "idle";
  if (s) {
    renderMeter(s.coverage, s.target);
    const v = state.visitor;
    if (v && v.keypoints) {
      drawPose($("visitor"), v.keypoints, v.width, v.height, "#6fd3ff");
      $("visitor").dataset.seq = String(v.seq);
    } else {
      drawPose($("visitor"), null, 1, 1, "#6fd3ff");
    }
    return;
  }
  const video = $("last-video");
  const showVideo = state.between === "last-video" && state.last_video;
  video.hidden = !showVideo;
  $("attract").hidden = !!showVideo;
  if (showVideo && video.getAttribute("src") !== state.last_video) video.setAttribute("src", state.last_video);
  if (!showVideo && video.getAttribute("src")) { video.removeAttribute("src"); video.load(); }
}

function connect() {
  const source = new EventSource("/api/display/events");
  source.onmessage = (event) => {
    state = JSON.parse(event.data);
    clockOffset = state.now - Date.now() / 1000;
    lastEvent = Date.now();
    $("conn").hidden = true;
    render();
  };
  source.onerror = async () => {
    $("conn").hidden = false;
    $("conn").textContent = "reconnecting…";
    try {
      const r = await fetch("/api/display", { cache: "no-store" });
      if (r.status === 401 || r.status === 403) {
        source.close();
        $("conn").textContent = "this display's link is no longer valid: ask the operator for a new one";
      }
    } catch (e) { /* the server is away: EventSource keeps retrying */ }
  };
}

connect();
requestAnimationFrame(tick);
