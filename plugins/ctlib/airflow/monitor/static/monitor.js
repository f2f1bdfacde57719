/* The CT monitor page: reads api/logs, api/series and api/latest (relative URLs, the UI's
   session cookie) every minute and draws the logs table, three uPlot charts and the latest
   alerts and watch matches. Every value from the lake is put in the page as text, never as
   HTML: certificate names and issuers are written by whoever asked for a certificate. */
(function () {
  "use strict";

  var REFRESH_MS = 60000;
  var hours = 24;  // the charts' window: the range buttons set it (api/series?hours=)
  var PALETTE = ["#1f77b4", "#e6550d", "#2ca02c", "#9467bd", "#d62728", "#17becf", "#bcbd22", "#8c564b",
                 "#e377c2", "#3182bd", "#31a354", "#756bb1"];
  var charts = {};
  var colours = {};
  var names = {};

  // ------------------------------------------------------------------------- helpers

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else if (key === "className") node.className = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function int(n) {
    return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "unknown";
    if (seconds < 90) return Math.round(seconds) + " s";
    if (seconds < 5400) return Math.round(seconds / 60) + " min";
    if (seconds < 172800) return (seconds / 3600).toFixed(1) + " h";
    return Math.round(seconds / 86400) + " d";
  }

  function utc(iso) {
    return iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("Z", "") : "–";
  }

  function short(iso) {  // MM-DD HH:MM:SS
    return utc(iso).slice(5);
  }

  function ago(iso) {
    if (!iso) return "never";
    return duration(Math.max(0, (Date.now() - Date.parse(iso)) / 1000)) + " ago";
  }

  // In the Airflow UI's frame (sandboxed, no pop-ups) a click cannot open a new tab: say so.
  var framed = window.self !== window.top;

  function crtshLink(url) {
    if (typeof url !== "string" || url.indexOf("https://crt.sh/") !== 0) return el("span");
    var title = framed ? "the certificate on crt.sh (in the Airflow UI: right-click, open in a new tab)"
                       : "the certificate on crt.sh";
    return el("a", {href: url, target: "_blank", rel: "noopener noreferrer", title: title, text: "crt.sh"});
  }

  function getJSON(url) {
    return fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}}).then(function (answer) {
      if (answer.status === 401 || answer.status === 403) {
        throw new Error("not signed in to Airflow (or the session expired): sign in again and reload");
      }
      if (!answer.ok) throw new Error(url + ": HTTP " + answer.status);
      return answer.json();
    });
  }

  function colourOf(slug) {
    if (!(slug in colours)) colours[slug] = PALETTE[Object.keys(colours).length % PALETTE.length];
    return colours[slug];
  }

  function body(tableId) {
    var tbody = document.querySelector("#" + tableId + " tbody");
    tbody.textContent = "";
    return tbody;
  }

  function emptyRow(tbody, columns, text) {
    tbody.appendChild(el("tr", {className: "empty"}, [el("td", {colspan: String(columns), text: text})]));
  }

  // ------------------------------------------------------------------------- the logs table

  // The cell(s) that made a status, coloured like it.
  var CAUSE = {behind: ["lag"], stalled: ["backlog", "last"], failing: ["tree"], not_started: ["watermark"]};
  var CELL = {ok: "cell-ok", behind: "cell-behind", stalled: "cell-stalled", failing: "cell-failing", not_started: "cell-idle"};

  function renderLogs(data) {
    var tbody = body("logs");
    if (!data.logs.length) {
      emptyRow(tbody, 12, "no monitored log (check CT_LOG_LIST)");
      return;
    }
    data.logs.forEach(function (log) {
      colourOf(log.slug);
      names[log.slug] = log.description || log.slug;
      var causes = CAUSE[log.status] || [];
      function cell(key, text, className, title) {
        var classes = [className || ""];
        if (causes.indexOf(key) >= 0) classes.push(CELL[log.status]);
        var td = el("td", {className: classes.join(" ").trim(), "data-col": key, text: text});
        if (title) td.title = title;
        return td;
      }
      var name = el("td", {"data-col": "log"}, [
        el("span", {text: log.description || log.slug}), el("span", {className: "sub mono", text: log.slug})]);
      var status = el("td", {"data-col": "status"}, [el("span", {className: "pill", text: log.status})]);
      var incidents = cell("incidents", int(log.incidents_total), "num");
      if (log.incidents_total > 0) incidents.classList.add("cell-failing");
      var errors = cell("errors", int(log.errors_total), "num");
      if (log.errors_total > 0) errors.classList.add("cell-behind");
      tbody.appendChild(el("tr", {className: "status-" + log.status, "data-slug": log.slug, "data-status": log.status}, [
        name, status,
        cell("kind", log.kind), cell("operator", log.operator),
        cell("tree", int(log.tree_size), "num"),
        cell("watermark", int(log.next_index), "num"),
        cell("backlog", int(log.backlog), "num"),
        cell("lag", duration(log.freshness_lag_seconds), "num"),
        cell("last", ago(log.last_success), "", log.last_success ? utc(log.last_success) + " UTC" : ""),
        cell("entries", int(log.entries_total), "num"),
        errors, incidents,
      ]));
    });
  }

  // ------------------------------------------------------------------------- charts

  function axes(yValues) {
    var grid = {stroke: cssVar("--line"), width: 1};
    var ticks = {stroke: cssVar("--line"), width: 1};
    var font = "12px system-ui, sans-serif";
    return [
      {stroke: cssVar("--muted"), grid: grid, ticks: ticks, font: font},
      {stroke: cssVar("--muted"), grid: grid, ticks: ticks, font: font, size: 56, values: yValues},
    ];
  }

  function draw(id, data, series, options) {
    var figure = document.getElementById(id);
    var plot = figure.querySelector(".plot");
    if (charts[id]) {
      charts[id].destroy();
      delete charts[id];
    }
    plot.textContent = "";
    var points = 0;
    var values = 0;
    for (var i = 1; i < data.length; i++) {
      data[i].forEach(function (v) {
        if (v !== null && v !== undefined) values++;
        if (v > 0) points++;
      });
    }
    figure.dataset.points = String(points);
    if (!values && !options.empty && options.none) options.empty = options.none;
    if (options.empty) {
      plot.appendChild(el("div", {className: "nodata", text: options.empty}));
      figure.dataset.drawn = "false";
      return;
    }
    charts[id] = new uPlot({
      width: Math.max(300, plot.clientWidth),
      height: 240,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
      scales: {
        x: {time: true, range: function () { return options.x; }},
        y: {range: function (u, min, max) { return [0, Math.max(max || 0, options.minMax || 1)]; }},
      },
      series: [{label: "UTC"}].concat(series),
      axes: axes(options.yValues),
      legend: {show: true},
      cursor: {points: {size: 6}},
    }, data, plot);
    figure.dataset.drawn = "true";
  }

  function label(slug) {
    return names[slug] || slug;
  }

  function renderCharts(series) {
    var entries = series.entries_per_minute;
    var span = [entries.t[0], entries.t[entries.t.length - 1] + 60];  // every chart: the same hours
    var slugs = Object.keys(entries.logs).sort(function (a, b) { return order(a) - order(b); });
    var anyEntries = slugs.some(function (s) { return entries.logs[s].some(function (v) { return v > 0; }); });
    draw("chart-entries", [entries.t].concat(slugs.map(function (s) { return entries.logs[s]; })),
      slugs.map(function (s) {
        return {label: label(s), stroke: colourOf(s), width: 1.5, points: {show: false},
                value: function (u, v) { return v === null ? "–" : int(v); }};
      }),
      {empty: anyEntries ? "" : "no entries ingested in the last " + series.hours + " hours", x: span,
       yValues: function (u, values) { return values.map(int); }, minMax: 10});
    document.getElementById("entries-note").textContent = entries.from_health.length
      ? "(partly from health checks, where compaction merged a day: " + entries.from_health.join(", ") + ")" : "";

    var lag = series.freshness_lag;
    var lagSlugs = Object.keys(lag.logs).sort(function (a, b) { return order(a) - order(b); });
    draw("chart-lag", [lag.t].concat(lagSlugs.map(function (s) { return lag.logs[s]; })),
      lagSlugs.map(function (s) {
        return {label: label(s), stroke: colourOf(s), width: 1.5, spanGaps: false, points: {show: true, size: 4},
                value: function (u, v) { return v === null ? "–" : duration(v); }};
      }),
      {empty: "", none: "no health check of a started log in the window yet (ct_health runs every 5 minutes)", x: span, yValues: function (u, values) { return values.map(duration); }, minMax: 60});

    var alerts = series.alerts_per_hour;
    var fill = cssVar("--failing");
    var bars = alerts.alerts.map(function (n) { return n > 0 ? n : null; });  // no bar for an empty hour
    draw("chart-alerts", [alerts.t, bars], [{
      label: "alerts", stroke: fill, fill: fill + "55", width: 1,
      paths: uPlot.paths.bars({size: [0.9, Infinity], align: 1}), points: {show: false},  // a bar spans its hour
      value: function (u, v) { return v === null ? "0" : int(v); },
    }], {empty: "", x: [alerts.t[0], alerts.t[alerts.t.length - 1] + 3600], yValues: function (u, values) { return values.map(int); }, minMax: 5});
  }

  var logOrder = {};

  function order(slug) {
    return slug in logOrder ? logOrder[slug] : 1e6;
  }

  function resize() {
    Object.keys(charts).forEach(function (id) {
      var plot = document.getElementById(id).querySelector(".plot");
      charts[id].setSize({width: Math.max(300, plot.clientWidth), height: 240});
    });
  }

  // ------------------------------------------------------------------------- latest

  function entryCell(row) {
    return el("td", {}, [
      el("span", {className: "mono", text: row.log_slug + " #" + row.index}),
      el("span", {className: "sub", text: row.entry_type === "precert" ? "precertificate" : "certificate"})]);
  }

  function renderLatest(latest) {
    var alerts = body("alerts");
    if (!latest.alerts.length) emptyRow(alerts, 7, "no alert in today's and yesterday's partitions");
    latest.alerts.forEach(function (row) {
      var why = el("td", {title: row.why}, row.rules.map(function (rule) { return el("span", {className: "rule", text: rule}); }));
      alerts.appendChild(el("tr", {}, [
        el("td", {className: "mono when", text: short(row.scored_at), title: utc(row.scored_at) + " UTC"}),
        el("td", {className: "names"}, [el("span", {className: "mono", text: row.name}),
                                        el("span", {className: "sub", text: row.registered_domain || ""})]),
        el("td", {className: "num", text: Number(row.score).toFixed(0)}),
        el("td", {text: row.brand || "–"}),
        why, entryCell(row), el("td", {}, [crtshLink(row.crtsh)]),
      ]));
    });

    var watch = body("watch");
    if (!latest.watch_matches.length) emptyRow(watch, 6, "no watch match yet");
    latest.watch_matches.forEach(function (row) {
      watch.appendChild(el("tr", {title: row.why}, [
        el("td", {className: "mono when", text: short(row.matched_at), title: utc(row.matched_at) + " UTC"}),
        el("td", {className: "mono", text: row.watch_item}),
        el("td", {className: "names mono", text: row.names.join(", ")}),
        el("td", {className: "names", text: row.issuer}),
        entryCell(row), el("td", {}, [crtshLink(row.crtsh)]),
      ]));
    });
  }

  // ------------------------------------------------------------------------- refresh

  function problem(message) {
    var node = document.getElementById("problem");
    node.hidden = !message;
    node.textContent = message || "";
  }

  var running = false;

  function refresh() {
    if (running) return;
    running = true;
    var errors = [];
    function keep(err) { errors.push(err.message || String(err)); }
    getJSON("api/logs").then(function (logs) {
      logOrder = {};
      logs.logs.forEach(function (log, n) { logOrder[log.slug] = n; });
      renderLogs(logs);
    }).catch(keep).then(function () {
      return Promise.all([
        getJSON("api/series?hours=" + hours).then(renderCharts).catch(keep),
        getJSON("api/latest").then(renderLatest).catch(keep),
      ]);
    }).then(function () {
      problem(errors.length ? Array.from(new Set(errors)).join("; ") : "");
      document.getElementById("updated").textContent = "updated " + utc(new Date().toISOString()) + " UTC";
      document.body.dataset.loaded = "true";
      running = false;
    });
  }

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(resize, 150);
  });
  document.getElementById("refresh").addEventListener("click", refresh);
  Array.prototype.forEach.call(document.querySelectorAll("#range button"), function (button) {
    button.addEventListener("click", function () {
      hours = Number(button.dataset.hours);
      Array.prototype.forEach.call(document.querySelectorAll("#range button"), function (other) {
        other.setAttribute("aria-pressed", String(other === button));
      });
      document.getElementById("range-label").textContent = hours === 1 ? "hour" : hours + " hours";
      refresh();
    });
  });
  setInterval(function () { if (!document.hidden) refresh(); }, REFRESH_MS);
  refresh();
})();
