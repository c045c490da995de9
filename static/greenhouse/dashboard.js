// Refresh the dashboard body in place every N seconds (no full page reload).
(function () {
  const root = document.getElementById("dashboard");
  if (!root) return;
  const seconds = Number(root.dataset.refreshSeconds) || 30;
  const loginUrl = document.body.dataset.loginUrl || "/accounts/login/";

  function toLogin() {
    // Log in again, then come back here (the dashboard, not its ?partial=1 body).
    const here = encodeURIComponent(window.location.pathname + window.location.search).replace(/%2F/g, "/");
    window.location.assign(loginUrl + "?next=" + here);
  }

  async function refresh() {
    let response;
    try {
      response = await fetch(root.dataset.refreshUrl, { credentials: "same-origin" });
    } catch (error) {
      return; // offline for a moment: keep what is shown
    }
    // Once the session has expired the body's URL redirects to the login page, and fetch follows
    // redirects: never paste that page into the dashboard, go there.
    const atLogin = response.redirected && new URL(response.url).pathname === new URL(loginUrl, window.location.href).pathname;
    if (atLogin || response.status === 401) return toLogin();
    if (!response.ok) return; // the server is in trouble: keep the last values shown
    root.innerHTML = await response.text();
  }
  setInterval(refresh, seconds * 1000);
})();
