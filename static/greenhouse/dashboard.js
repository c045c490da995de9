// Refresh the dashboard body in place every N seconds (no full page reload).
(function () {
  const root = document.getElementById("dashboard");
  if (!root) return;
  const seconds = Number(root.dataset.refreshSeconds) || 30;
  async function refresh() {
    try {
      const response = await fetch(root.dataset.refreshUrl, { credentials: "same-origin" });
      if (response.ok) root.innerHTML = await response.text();
    } catch (error) { /* offline for a moment: keep what is shown */ }
  }
  setInterval(refresh, seconds * 1000);
})();
