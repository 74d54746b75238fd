// The lane screen: live seen and scanned lists, alert banner with one-tap resolution, an
// optional customer prompt before staff are called, and the produce pick list the till asks for. Fed by the lane's websocket; reconnects
// by itself and asks the lane for the whole state whenever it does.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { transaction: null, alerts: new Map(), seen: [], scanned: [] };
const TITLES = {
  unscanned_item: "Item not scanned",
  quantity_mismatch: "Quantity does not match",
  switch: "Scanned code does not match the item",
  scan_without_item: "Scan without an item",
};

function money(minor, currency) {
  return minor == null ? "" : `${(minor / 100).toFixed(2)}${currency ? " " + currency : ""}`;
}

// A product's price as the shelf shows it, and for weighed produce what this weight costs.
function price(p, weightG) {
  if (p.price_minor == null) return "";
  if (!p.per_kg) return money(p.price_minor, p.currency);
  const perKg = `${money(p.price_minor, p.currency)}/kg`;
  if (!weightG) return perKg;
  return `${(weightG / 1000).toFixed(3)} kg · ${money(Math.round(p.price_minor * weightG / 1000), p.currency)} (${perKg})`;
}

function li(text, code, cls) {
  const item = document.createElement("li");
  if (cls) item.className = cls;
  const name = document.createElement("span");
  name.textContent = text;
  const small = document.createElement("span");
  small.className = "code";
  small.textContent = code;
  item.append(name, small);
  return item;
}

function renderLists() {
  const problemTracks = new Set(
    [...state.alerts.values()].filter((a) => a.status === "open").map((a) => a.track_id));
  const seen = $("seen");
  seen.replaceChildren(...state.seen.map((s) => li(
    s.name || (s.code ? s.code : "Unknown product"), price(s),
    problemTracks.has(s.track_id) ? "problem" : "")));
  const scanned = $("scanned");
  scanned.replaceChildren(...state.scanned.map((s) => li(
    s.error ? `Invalid code ${s.code}` : (s.name || s.code) + (s.quantity > 1 ? ` ×${s.quantity}` : ""),
    s.error ? s.error : price(s, s.weight_g), s.error ? "invalid" : "")));
  $("seen-count").textContent = state.seen.length;
  $("scanned-count").textContent = state.scanned.length;
  $("transaction").textContent = state.transaction ? `transaction ${state.transaction}` : "no transaction";
}

function openAlerts() {
  return [...state.alerts.values()].filter((a) => a.status === "open" && a.type !== "scan_without_item");
}

function renderBanner() {
  const open = openAlerts();
  const notes = [...state.alerts.values()].filter((a) => a.status === "open" && a.type === "scan_without_item");
  $("notes").textContent = notes.length ? `${notes.length} scan(s) with no item seen: please check the basket` : "";
  const alert = open[0];
  if (!alert) {
    $("banner").hidden = true;
    $("prompt").hidden = true;
    return;
  }
  const crop = alert.has_evidence ? `/api/alerts/${alert.alert_id}/evidence.jpg` : "";
  const promptUntil = (alert.received_at || 0) + 1000 * (alert.customer_prompt_s || 0);
  if (Date.now() < promptUntil) {
    $("prompt").hidden = false;
    $("banner").hidden = true;
    $("prompt-crop").src = crop;
    $("prompt-name").textContent = alert.seen.name || "";
    setTimeout(renderBanner, promptUntil - Date.now() + 20);
    return;
  }
  $("prompt").hidden = true;
  const banner = $("banner");
  banner.hidden = false;
  banner.className = "banner " + (alert.type === "switch" ? "switch" : "");
  banner.dataset.alertId = alert.alert_id;
  if (banner.dataset.shown !== alert.alert_id) {  // a new alert: its crop, not the last replay
    banner.dataset.shown = alert.alert_id;
    $("banner-clip").hidden = true;
    $("banner-clip").removeAttribute("src");
  }
  $("banner-crop").src = crop;
  $("banner-crop").hidden = !crop || !$("banner-clip").hidden;
  $("replay").hidden = !alert.has_clip;
  $("banner-title").textContent = TITLES[alert.type] || alert.type;
  $("banner-instruction").textContent = alert.instruction;
  const seen = alert.seen.name ? `Seen: ${alert.seen.name} ${price(alert.seen)}` : "Seen: unknown product";
  const scanned = alert.scanned && alert.scanned.name ? ` · Scanned: ${alert.scanned.name} ${price(alert.scanned)}` : "";
  $("banner-detail").textContent = seen + scanned;
  $("banner-count").textContent = open.length > 1 ? `1 of ${open.length}` : "";
  $("banner-error").textContent = "";
}

function applyState(message) {
  const tx = message.transaction;
  state.transaction = tx ? tx.transaction_id : null;
  state.seen = tx ? tx.seen : [];
  state.scanned = tx ? tx.scanned : [];
  const alerts = [...(message.held_alerts || []), ...(tx ? tx.alerts : [])];
  state.alerts = new Map(alerts.map((a) => [a.alert_id, { ...a, received_at: Date.now() }]));
  $("lane").textContent = message.lane_id;
  renderLists();
  renderBanner();
}

// Alerts still open when their transaction ends (the final check runs before payment) stay
// on the screen until the cashier resolves them; notes go with their transaction.
function keepHeldAlerts() {
  state.alerts = new Map([...state.alerts].filter(
    ([, a]) => a.status === "open" && a.type !== "scan_without_item"));
}

function handle(message) {
  switch (message.type) {
    case "state": $("picklist").hidden = true; applyState(message); return;
    case "transaction_started":
      state.transaction = message.transaction_id; state.seen = []; state.scanned = [];
      $("picklist").hidden = true; keepHeldAlerts(); break;
    case "transaction_ended":
      state.transaction = null; state.seen = []; state.scanned = []; keepHeldAlerts(); break;
    case "item": state.seen.push(message); break;
    case "scan": state.scanned.push(message); break;
    case "alert": {
      const previous = state.alerts.get(message.alert.alert_id);
      state.alerts.set(message.alert.alert_id,
        { ...message.alert, received_at: previous ? previous.received_at : Date.now() });
      break;
    }
    case "pick_list": showPickList(message); return;
    case "pick_list_closed": closePickList(message.request_id); return;
    case "clip": {
      const alert = state.alerts.get(message.alert_id);
      if (!alert) return;
      alert.has_clip = true;
      break;
    }
    default: return;
  }
  renderLists();
  renderBanner();
}

// The produce pick list the till asked for: the camera's PLUs, best first; a tap tells the till.
function showPickList(message) {
  const panel = $("picklist");
  panel.dataset.requestId = message.request_id;
  const picture = $("picklist-picture");
  picture.hidden = !message.has_picture;
  if (message.has_picture) picture.src = `/api/picklist/${encodeURIComponent(message.request_id)}/picture.jpg`;
  $("picklist-choices").replaceChildren(...message.proposals.map((p) => {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.code = p.code;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = p.name || p.code;
    const detail = document.createElement("span");
    detail.className = "code";
    detail.textContent = `${p.code} · ${price(p)}`;
    button.append(name, detail);
    button.addEventListener("click", () => choose(message.request_id, p.code));
    return button;
  }));
  $("picklist-empty").hidden = message.proposals.length > 0;
  $("picklist-error").textContent = "";
  panel.hidden = false;
}

function closePickList(requestId) {
  if ($("picklist").dataset.requestId === requestId) $("picklist").hidden = true;
}

async function choose(requestId, code) {
  const reply = await fetch(`/api/picklist/${encodeURIComponent(requestId)}/choose`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ code }),
  });
  if (!reply.ok) {
    const body = await reply.json().catch(() => ({}));
    $("picklist-error").textContent = body.detail || `could not send the choice (${reply.status})`;
  }
}

// The clip of the alert on the banner, in place of its crop, from the lane itself.
function replay() {
  const id = $("banner").dataset.alertId;
  const video = $("banner-clip");
  video.src = `/api/alerts/${id}/clip.webm`;
  video.hidden = false;
  $("banner-crop").hidden = true;
  video.play().catch(() => {});
}

async function resolve(resolution, reason, pin) {
  const id = $("banner").dataset.alertId;
  const reply = await fetch(`/api/alerts/${id}/resolve`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ resolution, reason, pin }),
  });
  if (!reply.ok) {
    const body = await reply.json().catch(() => ({}));
    $("banner-error").textContent = body.detail || `could not resolve (${reply.status})`;
  }
}

document.querySelectorAll("#banner .actions button[data-resolution]").forEach((button) => {
  button.addEventListener("click", () => {
    const resolution = button.dataset.resolution;
    if (resolution === "supervisor_override") {
      $("override").hidden = false;
      $("override-reason").focus();
      return;
    }
    resolve(resolution);
  });
});
$("replay").addEventListener("click", replay);
$("override").addEventListener("submit", (event) => {
  event.preventDefault();
  $("override").hidden = true;
  resolve("supervisor_override", $("override-reason").value, $("override-pin").value);
  $("override-reason").value = "";
  $("override-pin").value = "";
});

let delay = 250;
function connect() {
  const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/screen`);
  socket.onopen = () => { delay = 250; $("link").className = "link up"; $("link").textContent = "live"; };
  socket.onmessage = (event) => handle(JSON.parse(event.data));
  socket.onclose = () => {
    $("link").className = "link down"; $("link").textContent = "offline";
    setTimeout(connect, delay);
    delay = Math.min(delay * 2, 4000);
  };
}
connect();
