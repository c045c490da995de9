// Sensor and location pages: one Chart.js chart per metric (mean line, min-max band), gaps as gaps,
// times in the site's time zone, range buttons and a custom from-to.
//
// - The range is in the URL (?range=1h, or ?start=...&end=... in UTC): a reload or a shared link
//   opens it, and the back button goes back to the previous range.
// - Without a range in the URL, a sensor younger than the default range opens on the smallest range
//   that covers its life (data-since: its first report, or a location's first placement), and the
//   time axis never starts before that moment.
// - The last choice wins: an answer for an earlier choice that arrives late is dropped (and
//   counted in #charts[data-dropped]).
// - Each chart has a text alternative (its caption, also the canvas's aria-label) and a data table.
(function () {
  const root = document.getElementById("charts");
  const form = document.getElementById("range");
  if (!root || !form || !window.Chart) return;
  const zone = root.dataset.timeZone || "UTC";
  const DateTime = luxon.DateTime;
  const charts = {};
  const COLORS = ["#2f5d34", "#b5541c", "#1f5fa8", "#8a3ea0", "#a08a1f", "#1f8a8a"];
  const MINUTE = 60 * 1000;
  const DEFAULT_RANGE = "24h";
  const rangeButtons = [...form.querySelectorAll("button[data-range]")];
  const RANGES = rangeButtons.map((b) => b.dataset.range);
  const RANGE_TEXT = { "1h": "last hour", "24h": "last 24 h", "7d": "last 7 days", "30d": "last 30 days", "1y": "last year" };
  // Epoch milliseconds before which there can be no data (the sensor's first report), or null.
  const since = root.dataset.since ? Number(root.dataset.since) * 1000 : null;
  let current = null; // what is shown: {range: "1h"} or {start: ISO, end: ISO}
  let generation = 0; // bumped by every drawAll: an answer of an older generation is stale

  function hours(name) {
    const match = /^(\d+)([hdy])$/.exec(name);
    return match ? Number(match[1]) * { h: 1, d: 24, y: 24 * 365 }[match[2]] : Infinity;
  }

  function autoRange() {
    // The smallest range that covers everything since the first report (2 minutes of margin: a
    // range ends with the current minute and rows start on whole minutes), never more than the default.
    if (since === null) return DEFAULT_RANGE;
    const age = Date.now() - since;
    const fits = RANGES.filter((name) => hours(name) <= hours(DEFAULT_RANGE) && hours(name) * 60 * MINUTE - 2 * MINUTE >= age);
    return fits.sort((a, b) => hours(a) - hours(b))[0] || DEFAULT_RANGE;
  }

  function fromUrl() {
    // The range asked for in the URL, or null when it asks for none (the page then picks).
    const query = new URLSearchParams(window.location.search);
    if (query.get("start") && query.get("end")) return { start: query.get("start"), end: query.get("end") };
    if (RANGES.includes(query.get("range"))) return { range: query.get("range") };
    return null;
  }

  function toLogin() {
    // The session has expired: log in again, then come back to this very page and range.
    const here = encodeURIComponent(window.location.pathname + window.location.search).replace(/%2F/g, "/");
    window.location.assign((document.body.dataset.loginUrl || "/accounts/login/") + "?next=" + here);
  }

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

  function isolatedRadius(context) {
    // A point with no neighbour on either side (a single minute, or data between two gaps) is part
    // of no line segment: draw it as a dot, or it is invisible.
    const data = context.dataset.data;
    const i = context.dataIndex;
    const y = (k) => (k >= 0 && k < data.length ? data[k].y : null);
    return y(i) !== null && y(i - 1) === null && y(i + 1) === null ? 3 : 0;
  }

  function axisStart(data, firstPoint) {
    // The time axis starts with the range, or with the first report when that is later: a young
    // sensor's minutes fill the chart instead of a sliver at its right edge.
    const start = Date.parse(data.start);
    const end = Date.parse(data.end);
    if (since === null || since <= start || since >= end) return start;
    let t = Math.floor(since / MINUTE) * MINUTE;
    if (firstPoint !== null && firstPoint < t) t = firstPoint;
    return Math.max(start, t);
  }

  function timeText(ms) {
    const t = DateTime.fromMillis(ms, { zone });
    return t.toFormat(t.hasSame(DateTime.now().setZone(zone), "day") ? "HH:mm" : "d LLL HH:mm");
  }

  function rangeText() {
    if (current.range) return RANGE_TEXT[current.range] || "last " + current.range;
    return timeText(Date.parse(current.start)) + " to " + timeText(Date.parse(current.end));
  }

  function number(value) {
    return value.toFixed(1);
  }

  function seriesText(points, unit) {
    // "latest 21.4 °C at 14:02, min 12.0, max 25.3" over the points of one sensor.
    if (!points.length) return "no readings";
    const last = points[points.length - 1];
    const low = Math.min(...points.map((p) => p.min));
    const high = Math.max(...points.map((p) => p.max));
    return "latest " + number(last.mean) + (unit ? " " + unit : "") + " at " + timeText(Date.parse(last.t)) +
      ", min " + number(low) + ", max " + number(high);
  }

  function describe(section, data) {
    // The chart's text alternative: a visible caption and the canvas's aria-label, redrawn with it.
    let text = data.label + ", " + rangeText() + ": ";
    if (data.series) {
      text += data.series.length
        ? data.series.map((s) => s.sensor.name + " " + seriesText(s.points, s.unit)).join("; ")
        : "no sensor placed here sent readings";
    } else {
      text += seriesText(data.points, data.unit);
    }
    section.querySelector(".summary").textContent = text;
    section.querySelector("canvas").setAttribute("aria-label", text);
  }

  function fillTable(section) {
    // The data table behind <details>: built only while it is open (up to a thousand rows).
    const details = section.querySelector("details.data");
    const data = section.chartData;
    if (!details || !details.open || !data) return;
    // A sensor: time, mean, min, max. A location: time, then each sensor's mean (blank where it has none).
    const rows = new Map();
    let head;
    if (data.series) {
      head = ["time"].concat(data.series.map((s) => s.sensor.name));
      data.series.forEach((s, column) => s.points.forEach((p) => {
        if (!rows.has(p.t)) rows.set(p.t, new Array(data.series.length).fill(""));
        rows.get(p.t)[column] = number(p.mean);
      }));
    } else {
      head = ["time", "mean", "min", "max"];
      data.points.forEach((p) => rows.set(p.t, [number(p.mean), number(p.min), number(p.max)]));
    }
    const table = document.createElement("table");
    table.createCaption().textContent = section.querySelector(".summary").textContent;
    const headRow = table.createTHead().insertRow();
    head.forEach((name) => { const th = document.createElement("th"); th.scope = "col"; th.textContent = name; headRow.appendChild(th); });
    const body = table.createTBody();
    [...rows.keys()].sort().forEach((t) => {
      const row = body.insertRow();
      row.insertCell().textContent = DateTime.fromISO(t, { zone }).toFormat("yyyy-MM-dd HH:mm");
      rows.get(t).forEach((value) => { row.insertCell().textContent = value; });
    });
    details.querySelector(".table").replaceChildren(table);
  }

  async function draw(section, mine) {
    const metric = section.dataset.metric;
    const status = section.querySelector(".coverage");
    const params = new URLSearchParams({ metric, ...current });
    let response;
    let data = {};
    try {
      response = await fetch(root.dataset.api + "?" + params, { credentials: "same-origin" });
      data = await response.json().catch(() => ({})); // an error page may not be JSON
    } catch (error) {
      response = null; // no answer at all (offline for a moment)
    }
    if (mine !== generation) {
      // A later choice is being drawn: this answer is stale and must not replace its chart.
      root.dataset.dropped = String(Number(root.dataset.dropped || 0) + 1);
      return;
    }
    if (response && response.status === 401) return toLogin(); // the API's answer once logged out
    const ok = response && response.ok;
    status.classList.toggle("error", !ok);
    if (!ok) {
      status.textContent = response ? data.error || "The server answered " + response.status : "Could not reach the server.";
      return;
    }
    section.querySelector("h2").textContent = data.label + (data.unit ? " (" + data.unit + ")" : "");
    let datasets;
    let pointCount;
    let firstPoint = null;
    if (data.series) {
      // A location: the mean of every sensor placed there, one line each.
      // Sensors whose units differ (a calibrated soil probe in %, one without in raw units) say theirs.
      datasets = data.series.map((s, i) => ({
        label: s.sensor.name + (!data.unit && s.unit ? " (" + s.unit + ")" : ""),
        data: withGaps(s.points, data.step_seconds).map((r) => ({ x: r.x, y: r.mean })),
        borderColor: COLORS[i % COLORS.length], backgroundColor: COLORS[i % COLORS.length],
        borderWidth: 1.5, pointRadius: isolatedRadius, clip: 4, spanGaps: false, // clip: whole dots at the edges
      }));
      pointCount = data.series.reduce((n, s) => n + s.points.length, 0);
      const firsts = data.series.filter((s) => s.points.length).map((s) => Date.parse(s.points[0].t));
      if (firsts.length) firstPoint = Math.min(...firsts);
      status.textContent = data.series
        .map((s) => s.sensor.name + ": coverage " + (100 * s.coverage).toFixed(1) + " %").join(" · ");
    } else {
      const rows = withGaps(data.points, data.step_seconds);
      status.textContent =
        "coverage " + (100 * data.coverage).toFixed(1) + " % (" + data.samples + " of " + data.expected_samples + " samples)";
      datasets = [
        { label: "max", data: rows.map((r) => ({ x: r.x, y: r.max })), borderWidth: 0, pointRadius: 0, fill: false, spanGaps: false },
        { label: "min", data: rows.map((r) => ({ x: r.x, y: r.min })), borderWidth: 0, pointRadius: 0, fill: "-1", backgroundColor: "rgba(47,93,52,0.18)", spanGaps: false },
        { label: "mean", data: rows.map((r) => ({ x: r.x, y: r.mean })), borderColor: "#2f5d34", backgroundColor: "#2f5d34", borderWidth: 1.5, pointRadius: isolatedRadius, clip: 4, spanGaps: false },
      ];
      pointCount = data.points.length;
      if (rows.length) firstPoint = rows[0].x;
    }
    if (charts[metric]) charts[metric].destroy();
    charts[metric] = new Chart(section.querySelector("canvas"), {
      type: "line",
      data: { datasets },
      options: {
        animation: false, parsing: true, normalized: true,
        scales: {
          x: {
            type: "time", adapters: { date: { zone } }, min: axisStart(data, firstPoint), max: Date.parse(data.end),
            time: { minUnit: "minute" }, // a young sensor's few minutes: ticks on minutes, not every 4 seconds
          },
        },
        plugins: { legend: { display: Boolean(data.series) } },
      },
    });
    section.chartData = data;
    section.dataset.points = String(pointCount);
    section.dataset.shown = data.start + "/" + data.end; // the range this chart shows (UTC)
    describe(section, data);
    fillTable(section);
  }

  function showChoice() {
    // The picker shows what is drawn: the range's button pressed, or the custom from-to filled in.
    rangeButtons.forEach((b) => {
      const on = b.dataset.range === current.range;
      b.classList.toggle("active", on);
      b.setAttribute("aria-pressed", String(on));
    });
    const local = (iso) => DateTime.fromISO(iso, { zone: "utc" }).setZone(zone).toFormat("yyyy-MM-dd'T'HH:mm");
    form.start.value = current.start ? local(current.start) : "";
    form.end.value = current.end ? local(current.end) : "";
  }

  function drawAll() {
    const mine = ++generation;
    const csv = document.getElementById("csv");
    if (csv) csv.search = "?" + new URLSearchParams(current);
    showChoice();
    root.dataset.ready = "";
    return Promise.all([...root.querySelectorAll(".chart")].map((section) => draw(section, mine))).then(() => {
      if (mine === generation) root.dataset.ready = "1";
    });
  }

  function choose(choice) {
    // A range picked by the user: into the URL (a new history entry), then drawn.
    current = choice;
    const query = "?" + new URLSearchParams(choice);
    if (query !== window.location.search) window.history.pushState(choice, "", window.location.pathname + query);
    drawAll();
  }

  rangeButtons.forEach((button) => button.addEventListener("click", () => choose({ range: button.dataset.range })));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const toIso = (value) => DateTime.fromISO(value, { zone }).toUTC().toISO({ suppressMilliseconds: true });
    if (!form.start.value || !form.end.value) return;
    choose({ start: toIso(form.start.value), end: toIso(form.end.value) });
  });
  window.addEventListener("popstate", () => {
    // Back or forward: draw the range of that URL (no new history entry).
    current = fromUrl() || { range: autoRange() };
    drawAll();
  });
  root.querySelectorAll(".chart details.data").forEach((details) =>
    details.addEventListener("toggle", () => fillTable(details.closest(".chart"))));
  current = fromUrl() || { range: autoRange() };
  drawAll();
})();
