// The live feed: listens on the API's Server-Sent Events stream (the login
// cookie goes along, same origin) and prepends each event. Text only
// (textContent), never markup, so an address or URL cannot inject HTML.
(function () {
  "use strict";
  var list = document.getElementById("feed");
  var state = document.getElementById("feed-state");
  if (!list || !window.EventSource) { return; }
  var MAX_ITEMS = 100;
  var KINDS = ["open", "click", "reply", "delivered", "bounce", "event"];

  function setState(name, text) {
    if (state) { state.dataset.state = name; state.textContent = text; }
  }

  function field(data, names) {
    for (var i = 0; i < names.length; i++) {
      var value = data[names[i]];
      if (value !== undefined && value !== null && value !== "") { return String(value); }
    }
    return "";
  }

  function timeText(data) {
    var raw = data.at !== undefined ? data.at : data.time;
    var when = typeof raw === "number" ? new Date(raw * 1000) : new Date(String(raw || ""));
    return isNaN(when.getTime()) ? "" : when.toISOString().slice(11, 19);
  }

  function span(cls, text) {
    var node = document.createElement("span");
    node.className = cls;
    node.textContent = text;
    return node;
  }

  function show(message) {
    var data;
    try { data = JSON.parse(message.data); } catch (err) { return; }
    if (!data || typeof data !== "object") { return; }
    var kind = field(data, ["type", "kind", "event"]) || message.type;
    var item = document.createElement("li");
    item.className = "feed-item kind-" + kind.replace(/[^a-z_-]/gi, "");
    item.title = field(data, ["user_agent"]);
    item.appendChild(span("when", timeText(data) + " "));
    item.appendChild(span("kind", kind + " "));
    item.appendChild(span("klass", field(data, ["class", "klass"]) + " "));
    item.appendChild(span("who", field(data, ["recipient"]) || "someone"));
    var url = field(data, ["url"]);
    if (url) { item.appendChild(span("url", " → " + url)); }
    var messageId = field(data, ["message_id", "message"]);
    if (messageId) {
      var link = document.createElement("a");
      link.href = "/messages/" + encodeURIComponent(messageId);
      link.textContent = " message";
      item.appendChild(link);
    }
    list.insertBefore(item, list.firstChild);
    while (list.children.length > MAX_ITEMS) { list.removeChild(list.lastChild); }
  }

  var source = new EventSource(list.dataset.stream, { withCredentials: true });
  source.onopen = function () { setState("open", "live"); };
  source.onerror = function () { setState("reconnecting", "reconnecting…"); };
  source.onmessage = show;
  KINDS.forEach(function (kind) { source.addEventListener(kind, show); });
})();
