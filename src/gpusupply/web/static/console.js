// The console's own behaviour on top of htmx (htmx does the requests and swaps):
// the confirmation <dialog> and pausing the live refresh while it is open.
(function () {
  "use strict";
  var opener = null; // the button that opened the dialog; focus goes back to it

  function dialog() {
    return document.getElementById("confirm-dialog");
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    // Do not swap the table under an open confirmation (its opener would disappear).
    if (elt.hasAttribute("data-poll") && dialog() && dialog().open) {
      event.preventDefault();
    }
    if (elt.hasAttribute("data-confirm")) {
      opener = elt;
    }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var box = dialog();
    if (!box || event.detail.target.id !== "confirm-body") {
      return;
    }
    if (!box.open) {
      box.showModal();
    }
    var first = box.querySelector("[autofocus]");
    if (first) {
      first.focus();
    }
  });

  // `close` does not bubble: listen in the capture phase.
  document.addEventListener("close", function (event) {
    if (event.target !== dialog()) {
      return;
    }
    document.getElementById("confirm-body").replaceChildren();
    if (opener && document.body.contains(opener)) {
      opener.focus();
    }
    opener = null;
  }, true);
})();
