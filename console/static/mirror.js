// The live mirror: the MJPEG stream in an <img>, its figures polled once a second. A stream that
// ends or fails (the console restarting) is opened again after a pause.
(() => {
  const params = new URLSearchParams(location.search);
  const camera = params.get("camera") || "";
  const reference = params.get("reference") || "";
  const img = document.getElementById("mirror");
  const conn = document.getElementById("conn");
  document.getElementById("m-camera").value = camera;
  document.getElementById("m-reference").value = reference;
  document.getElementById("mirror-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    q.set("camera", document.getElementById("m-camera").value.trim());
    const ref = document.getElementById("m-reference").value.trim();
    if (ref) q.set("reference", ref);
    location.search = q.toString();
  });
  if (!camera) { conn.textContent = "choose a camera"; return; }
  const query = reference ? "?reference=" + encodeURIComponent(reference) : "";
  const base = "/api/mirror/" + encodeURIComponent(camera);
  let retry = null;
  let lost = false;
  let feed = null;  // the mirror feed the stream was opened on: another one means a restarted mirror

  function connect() {
    if (retry !== null) clearTimeout(retry);
    retry = null;
    img.src = base + ".mjpeg" + query + (query ? "&" : "?") + "t=" + Date.now();
  }
  function reconnect() {
    conn.textContent = "reconnecting…"; conn.className = "pill off";
    if (retry === null) retry = setTimeout(connect, 1500);
  }
  img.addEventListener("load", () => { conn.textContent = "live"; conn.className = "pill on"; });
  img.addEventListener("error", reconnect);

  const text = (id, value) => { document.getElementById(id).textContent = value; };
  async function poll() {
    try {
      const r = await fetch(base + "/state" + query, { cache: "no-store" });
      if (r.status === 401 || r.redirected) {  // a restarted console forgot its logins: back here after one
        location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
        return;
      }
      const s = await r.json();
      if (!r.ok) { text("message", s.error || r.statusText); return; }
      text("message", s.generator ? "" : s.message + " — showing the skeleton");
      text("s-mode", s.mode);
      text("s-fps", s.fps.toFixed(1) + " frames/s");
      text("s-delay", s.delay_ms_p50 === null ? "–" : s.delay_ms_p50 + " / " + s.delay_ms_p95 + " ms");
      text("s-dropped", s.superseded + " / " + s.stale);
      if (lost || (feed !== null && s.feed !== feed)) { lost = false; connect(); }  // back, or restarted: reopen
      feed = s.feed;
    } catch (e) {
      lost = true;
      reconnect();
    }
  }
  connect();
  poll();
  setInterval(poll, 1000);
})();
