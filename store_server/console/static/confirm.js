// Forms that ask before they act (retiring a lane or a store) carry their question in
// data-confirm: the consoles' Content-Security-Policy runs no inline handler.
document.addEventListener("submit", function (event) {
  "use strict";
  const form = event.target;
  const question = form && form.getAttribute ? form.getAttribute("data-confirm") : null;
  if (question && !window.confirm(question)) event.preventDefault();
});
