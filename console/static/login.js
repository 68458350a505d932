// The console's login: the password goes to POST /login as JSON, which sets an HttpOnly cookie.
"use strict";

// Where to go once logged in: the page that sent us here (?next=, this console's own paths only),
// so a booth screen whose console restarted comes back to what it showed.
function nextPage() {
  const next = new URLSearchParams(window.location.search).get("next") || "/";
  try {
    const url = new URL(next, window.location.origin);
    if (next.startsWith("/") && url.origin === window.location.origin) return url.pathname + url.search;
  } catch (_) { /* not a URL: the console's front page */ }
  return "/";
}

document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = document.getElementById("login");
  const message = document.getElementById("message");
  button.disabled = true;
  message.textContent = "";
  try {
    const response = await fetch("/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ password: document.getElementById("password").value }),
    });
    if (response.ok) {
      window.location.replace(nextPage());
      return;
    }
    let data = {};
    try { data = await response.json(); } catch (_) { /* keep the status line */ }
    message.textContent = data.error || `${response.status} ${response.statusText}`;
  } catch (err) {
    message.textContent = `The console is not reachable: ${err.message}`;
  } finally {
    button.disabled = false;
  }
});
