// The console's login: the password goes to POST /login as JSON, which sets an HttpOnly cookie.
"use strict";

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
      window.location.replace("/");
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
