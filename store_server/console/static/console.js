// The live alert feed: new and updated alerts arrive over a websocket and appear at the top of
// the alert list without a reload. If the socket drops, it reconnects with backoff.
(function () {
  "use strict";
  const rows = document.getElementById("alert-rows");
  const state = document.getElementById("live-state");
  const feed = document.getElementById("alert-feed");
  if (!rows || !feed || feed.dataset.live !== "yes") { if (state) state.textContent = ""; return; }
  const currency = feed.dataset.currency || "";
  let delay = 500;

  function money(minor) {
    if (minor === null || minor === undefined) return "–";
    return (minor / 100).toFixed(2) + " " + currency;
  }
  function words(text) { return (text || "").replace(/_/g, " "); }
  function cell(text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    return td;
  }
  // A product as the page draws it: catalog name (or why there is none), the code small.
  function product(name, code, unknown) {
    const span = document.createElement("span");
    if (!code) {
      span.className = "unknown";
      span.textContent = unknown;
      return span;
    }
    span.className = "product";
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name || "not in the catalog";
    const small = document.createElement("small");
    small.className = "code";
    small.textContent = code;
    span.append(label, small);
    return span;
  }
  function item(alert) {
    const td = cell("", "item");
    td.appendChild(product(alert.seen_name, alert.seen_code, "unknown product"));
    if (alert.scanned_code) {
      const scanned = document.createElement("span");
      scanned.className = "scanned-as";
      scanned.append("scanned as ", product(alert.scanned_name, alert.scanned_code, ""));
      td.appendChild(scanned);
    }
    return td;
  }
  function show(alert) {
    const empty = rows.querySelector(".empty-row");
    if (empty) empty.remove();
    let tr = rows.querySelector('tr[data-alert="' + CSS.escape(alert.alert_id) + '"]');
    const outcome = alert.status === "resolved" && alert.resolution ? alert.resolution : alert.status;
    if (tr) {  // an update (resolved at the lane, withdrawn)
      tr.querySelector(".outcome").textContent = words(outcome);
      return;
    }
    tr = document.createElement("tr");
    tr.dataset.alert = alert.alert_id;
    tr.className = "fresh sev-" + alert.severity;
    const when = cell("");
    const link = document.createElement("a");
    link.href = "/alerts/" + encodeURIComponent(alert.alert_id);
    link.textContent = alert.raised_at.replace("T", " ").slice(0, 19);
    when.appendChild(link);
    const kind = cell(" " + words(alert.alert_type) + (alert.subtype ? " (" + alert.subtype + ")" : ""));
    const sev = document.createElement("span");
    sev.className = "sev";
    sev.textContent = alert.severity;
    kind.prepend(sev);
    tr.append(
      when,
      cell(alert.lane_id),
      kind,
      item(alert),
      cell(money(alert.value_minor), "num"),
      cell(words(outcome), "outcome"),
    );
    rows.prepend(tr);
  }
  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/ws/alerts");
    socket.onopen = () => { delay = 500; state.textContent = "live"; state.classList.add("on"); };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "alert") show(message);
      else if (message.type === "overflow") location.reload();
    };
    socket.onclose = (event) => {
      state.classList.remove("on");
      if (event.code === 4401) { state.textContent = "signed out"; return; }
      state.textContent = "reconnecting…";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }
  connect();
})();
