// Sensor page: one Chart.js chart per metric (mean line, min-max band), gaps as gaps,
// times in the site's time zone, range buttons and a custom from-to.
(function () {
  const root = document.getElementById("charts");
  if (!root || !window.Chart) return;
  const zone = root.dataset.timeZone || "UTC";
  const charts = {};
  const COLORS = ["#2f5d34", "#b5541c", "#1f5fa8", "#8a3ea0", "#a08a1f", "#1f8a8a"];
  let current = { range: "24h" };

  function withGaps(points, stepSeconds) {
    // A missing step means no data: put a null there so no line is drawn across an outage.
    const out = [];
    let previous = null;
    for (const p of points) {
      const t = Date.parse(p.t);
      if (previous !== null && t - previous > stepSeconds * 1000) out.push({ x: previous + stepSeconds * 1000, mean: null, min: null, max: null });
      out.push({ x: t, mean: p.mean, min: p.min, max: p.max });
      previous = t;
    }
    return out;
  }

  async function draw(section) {
    const metric = section.dataset.metric;
    const params = new URLSearchParams({ metric, ...current });
    const response = await fetch(root.dataset.api + "?" + params, { credentials: "same-origin" });
    if (!response.ok) return;
    const data = await response.json();
    section.querySelector("h2").textContent = data.label + (data.unit ? " (" + data.unit + ")" : "");
    let datasets;
    let pointCount;
    if (data.series) {
      // A location: the mean of every sensor placed there, one line each.
      // Sensors whose units differ (a calibrated soil probe in %, one without in raw units) say theirs.
      datasets = data.series.map((s, i) => ({
        label: s.sensor.name + (!data.unit && s.unit ? " (" + s.unit + ")" : ""),
        data: withGaps(s.points, data.step_seconds).map((r) => ({ x: r.x, y: r.mean })),
        borderColor: COLORS[i % COLORS.length], borderWidth: 1.5, pointRadius: 0, spanGaps: false,
      }));
      pointCount = data.series.reduce((n, s) => n + s.points.length, 0);
      section.querySelector(".coverage").textContent = data.series
        .map((s) => s.sensor.name + ": coverage " + (100 * s.coverage).toFixed(1) + " %").join(" · ");
    } else {
      const rows = withGaps(data.points, data.step_seconds);
      section.querySelector(".coverage").textContent =
        "coverage " + (100 * data.coverage).toFixed(1) + " % (" + data.samples + " of " + data.expected_samples + " samples)";
      datasets = [
        { label: "max", data: rows.map((r) => ({ x: r.x, y: r.max })), borderWidth: 0, pointRadius: 0, fill: false, spanGaps: false },
        { label: "min", data: rows.map((r) => ({ x: r.x, y: r.min })), borderWidth: 0, pointRadius: 0, fill: "-1", backgroundColor: "rgba(47,93,52,0.18)", spanGaps: false },
        { label: "mean", data: rows.map((r) => ({ x: r.x, y: r.mean })), borderColor: "#2f5d34", borderWidth: 1.5, pointRadius: 0, spanGaps: false },
      ];
      pointCount = data.points.length;
    }
    if (charts[metric]) charts[metric].destroy();
    charts[metric] = new Chart(section.querySelector("canvas"), {
      type: "line",
      data: { datasets },
      options: {
        animation: false, parsing: true, normalized: true,
        scales: { x: { type: "time", adapters: { date: { zone } }, min: Date.parse(data.start), max: Date.parse(data.end) } },
        plugins: { legend: { display: Boolean(data.series) } },
      },
    });
    section.dataset.points = String(pointCount);
  }

  function drawAll() {
    const csv = document.getElementById("csv");
    if (csv) csv.search = "?" + new URLSearchParams(current);
    return Promise.all([...root.querySelectorAll(".chart")].map(draw)).then(() => { root.dataset.ready = "1"; });
  }

  const form = document.getElementById("range");
  form.querySelectorAll("button[data-range]").forEach((button) =>
    button.addEventListener("click", () => {
      form.querySelectorAll("button[data-range]").forEach((b) => b.classList.toggle("active", b === button));
      current = { range: button.dataset.range };
      root.dataset.ready = "";
      drawAll();
    })
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const toIso = (value) => luxon.DateTime.fromISO(value, { zone }).toUTC().toISO();
    if (!form.start.value || !form.end.value) return;
    current = { start: toIso(form.start.value), end: toIso(form.end.value) };
    root.dataset.ready = "";
    drawAll();
  });
  drawAll();
})();
