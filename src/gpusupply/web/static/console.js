// The console's own behaviour on top of htmx (htmx does the requests and swaps):
// the confirmation <dialog>, and keeping the live refresh away from it while it is open.
(function () {
  "use strict";
  var openerId = null; // the button that opened the dialog; focus goes back to it

  function dialog() {
    return document.getElementById("confirm-dialog");
  }

  function dialogOpen() {
    var box = dialog();
    return box !== null && box.open;
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    if (elt.hasAttribute("data-poll") && dialogOpen()) {
      event.preventDefault(); // no refresh under an open confirmation
    }
    if (elt.hasAttribute("data-confirm")) {
      openerId = elt.id;
      // The previous confirmation's content goes now, not when its dialog closed: a late `close`
      // event could otherwise empty the new content after it was swapped in.
      document.getElementById("confirm-body").replaceChildren();
    }
  });

  // A refresh that was already under way when the dialog opened is dropped, not swapped in.
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.requestConfig.elt.hasAttribute("data-poll") && dialogOpen()) {
      event.detail.shouldSwap = false;
    }
  });

  // Opened once htmx has settled the new content: htmx's own [autofocus] handling runs while
  // settling, and must not move the focus after the person has started tabbing in the dialog.
  // showModal() then focuses the [autofocus] button (Cancel) itself.
  document.addEventListener("htmx:afterSettle", function (event) {
    var box = dialog();
    if (box && event.detail.target.id === "confirm-body" && !box.open) {
      box.showModal();
    }
  });

  // `close` does not bubble: listen in the capture phase. The opener is found by its id,
  // since a refresh may have replaced the element itself.
  document.addEventListener("close", function (event) {
    if (event.target !== dialog()) {
      return;
    }
    if (event.target.open) {
      return; // a newer confirmation opened before this close was handled: keep it
    }
    var opener = openerId ? document.getElementById(openerId) : null;
    if (opener) {
      opener.focus();
    }
  }, true);

  // Copy buttons beside SSH commands: shown only where the clipboard can be written.
  function showCopyButtons(root) {
    if (!navigator.clipboard) {
      return;
    }
    root.querySelectorAll("button.copy[hidden]").forEach(function (button) {
      button.hidden = false;
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.copy");
    if (!button) {
      return;
    }
    navigator.clipboard.writeText(button.getAttribute("data-copy")).then(function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 2000);
    });
  });

  document.addEventListener("DOMContentLoaded", function () { showCopyButtons(document); });
  document.addEventListener("htmx:afterSettle", function (event) { showCopyButtons(event.detail.elt); });

  // The procure form's SSH key: this browser remembers the last one sent (localStorage, this
  // origin only; it is a public key) and fills it in next time.
  var REMEMBERED = "gpusupply.ssh_public_key";

  function fillRemembered() {
    document.querySelectorAll("textarea[data-remember]").forEach(function (field) {
      var stored = null;
      try { stored = window.localStorage.getItem(REMEMBERED); } catch (e) { return; }
      if (stored && !field.value) {
        field.value = stored;
      }
    });
  }

  document.addEventListener("submit", function (event) {
    var field = event.target.querySelector("textarea[data-remember]");
    if (field && field.value.trim()) {
      try { window.localStorage.setItem(REMEMBERED, field.value.trim()); } catch (e) { /* storage off */ }
    }
  });

  document.addEventListener("DOMContentLoaded", fillRemembered);

  // Charts (the Prices and Usage pages): each `table.chart-data` is drawn with uPlot into the
  // element its data-chart names, from the table's own numbers; the table then folds away.
  var COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];

  function drawChart(table) {
    var target = document.getElementById(table.getAttribute("data-chart"));
    if (target === null || typeof window.uPlot !== "function") {
      return;
    }
    var labels = Array.prototype.slice.call(table.tHead.rows[0].cells, 1).map(function (cell) {
      return cell.textContent;
    });
    var xs = [];
    var ys = labels.map(function () { return []; });
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      xs.push(Date.parse(row.querySelector("time").getAttribute("datetime")) / 1000);
      Array.prototype.forEach.call(row.querySelectorAll("td"), function (cell, n) {
        var value = cell.getAttribute("data-value");
        ys[n].push(value === null ? null : parseFloat(value));
      });
    });
    var series = [{}].concat(labels.map(function (label, n) {
      return { label: label, stroke: COLORS[n % COLORS.length], width: 2, spanGaps: true };
    }));
    var options = {
      width: Math.max(target.clientWidth, 320),
      height: 320,
      // The whole window, however few points there are (one point would otherwise span years).
      scales: { x: { time: true, range: [parseFloat(table.getAttribute("data-since")), parseFloat(table.getAttribute("data-until"))] } },
      series: series,
      axes: [{}, { label: table.getAttribute("data-unit") || "" }],
    };
    new window.uPlot(options, [xs].concat(ys), target);
    // What was drawn, for people reading the page's source and for the browser tests.
    target.setAttribute("data-drawn", "true");
    target.setAttribute("data-points", String(xs.length));
    target.setAttribute("data-series", String(labels.length));
    target.setAttribute("data-from", String(xs.length ? xs[0] : ""));
    var details = table.closest("details");
    if (details !== null) {
      details.open = false;
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("table.chart-data"), drawChart);
  });
})();
