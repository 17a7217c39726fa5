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
})();
