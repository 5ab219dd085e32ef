// The team view live: the main part from "state" messages, log lines from "log"
// messages, filtered by the server on the application and level chosen in the form.
(function () {
  "use strict";
  var MAX_LINES = 500;
  var main = document.getElementById("main");
  var list = document.getElementById("log-lines");
  var form = document.getElementById("log-filter");
  if (!main || !list || !window.EventSource) return;
  var source = null;

  function line(data) {
    var li = document.createElement("li");
    li.className = "level-" + data.level;
    var parts = [["time", (data.timestamp || "").slice(11, 19)], ["lvl", data.level], ["log-app", data.application || ""], ["text", data.text]];
    parts.forEach(function (part, i) {
      var el = document.createElement(part[0] === "time" ? "time" : "span");
      if (part[0] !== "time") el.className = part[0];
      el.textContent = part[1];
      if (i) li.appendChild(document.createTextNode(" "));
      li.appendChild(el);
    });
    return li;
  }

  function connect() {
    if (source) source.close();
    var app = document.getElementById("filter-app").value;
    var level = document.getElementById("filter-level").value;
    list.innerHTML = "";
    source = new EventSource("/team/events?" + new URLSearchParams({app: app, level: level}).toString());
    source.addEventListener("state", function (message) {
      main.innerHTML = JSON.parse(message.data).html;
    });
    source.addEventListener("log", function (message) {
      var follow = list.scrollTop + list.clientHeight >= list.scrollHeight - 20;
      list.appendChild(line(JSON.parse(message.data)));
      while (list.children.length > MAX_LINES) list.removeChild(list.firstChild);
      if (follow) list.scrollTop = list.scrollHeight;
    });
  }

  form.addEventListener("change", function () {
    var params = new URLSearchParams(new FormData(form));
    history.replaceState(null, "", "/team?" + params.toString());
    connect();
  });
  form.addEventListener("submit", function (e) { e.preventDefault(); connect(); });
  connect();
})();
