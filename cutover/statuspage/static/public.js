// Follows /events and swaps in the server-rendered main part; without JavaScript the
// page refreshes itself instead (a <noscript> meta refresh).
(function () {
  "use strict";
  var main = document.getElementById("main");
  if (!main || !window.EventSource) return;
  var source = new EventSource("/events?lang=" + encodeURIComponent(main.dataset.lang));
  source.addEventListener("state", function (message) {
    var data = JSON.parse(message.data);
    main.innerHTML = data.html;
    main.dataset.version = data.version;
    document.getElementById("live-note").hidden = false;
  });
})();
