// The dashboard: charts drawn from the server's specifications, and the figures re-read live.
//
// - Each <canvas data-chart='{...}'> carries its chart, made and formatted by the
//   hub (hub/console/dashboard_figures.py): labels, values, every tooltip's text.
//   This module only hands it to Chart.js (vendor/chartjs/chart.umd.js, loaded
//   before it), with the console's colours, a dash or point shape per line and a
//   fill pattern per stacked bar, so no series is told apart by colour alone.
// - The figures (cards, charts, tables, CSV links) are re-read as a server-rendered
//   fragment (data-fragment-url) when the live stream (/console/events) says
//   something changed, at most every 5 s, and every 60 s (preset ranges slide with
//   the clock). A hidden tab waits until it is shown again.
// - Without a tz in the URL, the browser's own time zone is filled in and used.
// - The From and To fields show only for a custom range.
import { registerShortcut } from "./console.js";

const ChartJs = globalThis.Chart;
const root = document.getElementById("figures");
const form = document.getElementById("dash-form");
const statusLine = document.getElementById("dash-status");

const MIN_GAP_MS = 5000; // between two refreshes caused by the live stream
const SETTLE_MS = 400; // a burst of changes (a reply, its delivery, the ticket) is one refresh
const PERIOD_MS = 60000;

// At least 4.5:1 against white each; the same order in every chart.
const PALETTE = ["#2f4ac0", "#a84300", "#1e6b34", "#8e2a8e", "#00707a", "#b3261e", "#4a5360"];
const DASHES = [[], [6, 4], [2, 3], [10, 3, 2, 3]];
const POINTS = ["circle", "triangle", "rectRot", "rect", "star", "crossRot"];

const charts = new Map();

function configureDefaults() {
  const styles = getComputedStyle(document.documentElement);
  ChartJs.defaults.font.family = getComputedStyle(document.body).fontFamily;
  ChartJs.defaults.font.size = 13;
  ChartJs.defaults.color = styles.getPropertyValue("--fg").trim() || "#1b1f24";
  ChartJs.defaults.borderColor = "#d5dae3";
  ChartJs.defaults.animation = false; // figures are swapped in place: no motion
  ChartJs.defaults.maintainAspectRatio = false;
}

// A fill for bar dataset `index`: plain for the first, then stripes, dots, lines.
function fill(color, index) {
  const kind = index % 5;
  if (kind === 0) return color;
  const size = 10;
  const tile = document.createElement("canvas");
  tile.width = size;
  tile.height = size;
  const pen = tile.getContext("2d");
  pen.fillStyle = color;
  pen.fillRect(0, 0, size, size);
  pen.fillStyle = "rgba(255, 255, 255, 0.85)";
  pen.strokeStyle = "rgba(255, 255, 255, 0.85)";
  pen.lineWidth = 2;
  if (kind === 1) {
    pen.beginPath();
    for (const shift of [-size, 0, size]) {
      pen.moveTo(shift, size);
      pen.lineTo(shift + size, 0);
    }
    pen.stroke();
  } else if (kind === 2) {
    pen.beginPath();
    pen.arc(size / 2, size / 2, 2, 0, 2 * Math.PI);
    pen.fill();
  } else if (kind === 3) {
    pen.fillRect(0, size / 2 - 1, size, 2);
  } else {
    pen.fillRect(size / 2 - 1, 0, 2, size);
  }
  return pen.createPattern(tile, "repeat");
}

function dataset(spec, given, index) {
  const color = PALETTE[index % PALETTE.length];
  const base = { label: given.label, data: given.data, texts: given.texts };
  if (spec.type === "line") {
    return {
      ...base,
      borderColor: color,
      backgroundColor: color,
      borderWidth: 2,
      borderDash: DASHES[index % DASHES.length],
      pointStyle: POINTS[index % POINTS.length],
      pointRadius: 4,
      pointHoverRadius: 6,
      spanGaps: false,
      clip: 8, // a point on the axis' edge (100 %) is drawn whole
    };
  }
  return { ...base, backgroundColor: fill(color, index), borderColor: "#ffffff", borderWidth: spec.stacked ? 1 : 0 };
}

function draw(canvas) {
  let spec;
  try {
    spec = JSON.parse(canvas.dataset.chart);
  } catch {
    return null;
  }
  const datasets = spec.datasets.map((given, index) => dataset(spec, given, index));
  const values = {
    beginAtZero: true,
    stacked: spec.stacked,
    title: { display: true, text: spec.axis },
    ticks: spec.integer ? { precision: 0 } : {},
  };
  if (spec.percent) values.max = 100;
  const categories = { stacked: spec.stacked, ticks: { autoSkip: true, maxRotation: 0 } };
  return new ChartJs(canvas, {
    type: spec.type,
    data: { labels: spec.labels, datasets },
    options: {
      responsive: true,
      indexAxis: spec.horizontal ? "y" : "x",
      interaction: { mode: "index", intersect: false },
      scales: spec.horizontal ? { x: values, y: categories } : { x: categories, y: values },
      plugins: {
        legend: { display: datasets.length > 1, labels: { usePointStyle: spec.type === "line" } },
        tooltip: {
          callbacks: {
            title: (items) => (items.length ? spec.titles[items[0].dataIndex] : ""),
            label: (item) => `${item.dataset.label}: ${item.dataset.texts[item.dataIndex]}`,
          },
        },
      },
    },
  });
}

function drawAll() {
  if (!ChartJs || !root) return;
  for (const canvas of root.querySelectorAll("canvas[data-chart]")) {
    const chart = draw(canvas);
    if (chart) charts.set(canvas.id, chart);
  }
}

function destroyAll() {
  for (const chart of charts.values()) chart.destroy();
  charts.clear();
}

function say(text) {
  if (statusLine && statusLine.textContent !== text) statusLine.textContent = text;
}

// Where the keyboard was, to put it back after the swap: the nearest element
// with an id, and the position among its focusable elements.
const FOCUSABLE = "a[href], summary, button, [tabindex]";
function focusPlace() {
  const active = document.activeElement;
  if (!active || !root.contains(active)) return null;
  const holder = active.closest("[id]");
  if (!holder || !root.contains(holder)) return null;
  return { id: holder.id, index: [...holder.querySelectorAll(FOCUSABLE)].indexOf(active) };
}

let running = null;
let again = false;
let lastStart = 0;
let timer = null;
let stale = false;

async function refresh() {
  if (!root) return;
  if (running) {
    again = true;
    return running;
  }
  lastStart = Date.now();
  root.setAttribute("aria-busy", "true");
  running = (async () => {
    try {
      const response = await fetch(root.dataset.fragmentUrl, { headers: { Accept: "text/html" } });
      if (!response.ok) {
        say(`The figures could not be refreshed (HTTP ${response.status}).`);
        return;
      }
      const template = document.createElement("template");
      template.innerHTML = await response.text();
      for (const open of root.querySelectorAll("details[open][id]")) {
        template.content.getElementById(open.id)?.setAttribute("open", "");
      }
      const place = focusPlace();
      destroyAll();
      root.replaceChildren(template.content);
      drawAll();
      if (place) {
        const holder = document.getElementById(place.id);
        const target = place.index < 0 ? holder : holder?.querySelectorAll(FOCUSABLE)[place.index];
        target?.focus?.({ preventScroll: true });
      }
      say("");
    } catch {
      say("The figures could not be refreshed: the hub did not answer.");
    } finally {
      root.setAttribute("aria-busy", "false");
      running = null;
      if (again) {
        again = false;
        soon();
      }
    }
  })();
  return running;
}

// A refresh soon: after the burst settles, and not within 5 s of the last one.
function soon() {
  if (timer) return;
  const wait = Math.max(SETTLE_MS, lastStart + MIN_GAP_MS - Date.now());
  timer = setTimeout(() => {
    timer = null;
    if (document.hidden) stale = true;
    else refresh();
  }, wait);
}

function useBrowserZone() {
  const input = document.getElementById("dash-tz");
  if (!input || input.dataset.explicit === "true") return;
  let zone = "";
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch {
    return;
  }
  if (!zone || zone === input.value) return;
  input.value = zone;
  const page = new URL(window.location.href);
  page.searchParams.set("tz", zone);
  window.history.replaceState(window.history.state, "", page);
  if (root) {
    const fragment = new URL(root.dataset.fragmentUrl, window.location.href);
    fragment.searchParams.set("tz", zone);
    root.dataset.fragmentUrl = fragment.pathname + fragment.search;
    refresh();
  }
}

function customFields() {
  const range = document.getElementById("dash-range");
  if (!form || !range) return;
  const show = () => {
    for (const field of form.querySelectorAll("[data-custom-field]")) field.hidden = range.value !== "custom";
  };
  range.addEventListener("change", show);
  show();
}

if (ChartJs) configureDefaults();
customFields();
drawAll();
if (root) {
  useBrowserZone();
  registerShortcut("r", "Refresh the dashboard's figures", () => refresh());
  if ("EventSource" in window) {
    const stream = new EventSource(root.dataset.events);
    stream.addEventListener("change", (event) => {
      try {
        if (JSON.parse(event.data).what !== "delivery") soon();
      } catch {
        /* ignore a malformed event */
      }
    });
    stream.addEventListener("resync", soon);
  }
  setInterval(() => {
    if (document.hidden) stale = true;
    else refresh();
  }, PERIOD_MS);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && stale) {
      stale = false;
      soon();
    }
  });
}
