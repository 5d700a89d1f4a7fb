// achannels chat demo: the lobby and the room page. Plain JavaScript, no build.
"use strict";

const NAME_KEY = "achannels-chat-name";
const base = document.body.dataset.base || "/";

const $ = (selector) => document.querySelector(selector);
const el = (tag, className, text) => {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
};

function storedName() {
  try { return (localStorage.getItem(NAME_KEY) || "").trim(); } catch { return ""; }
}
function storeName(name) {
  try { localStorage.setItem(NAME_KEY, name); } catch { /* private mode: keep it in memory */ }
}

// Stable colour per person.
const HUES = [250, 330, 15, 40, 145, 185, 205, 280, 100, 355];
function hue(name) {
  let h = 2166136261; // FNV-1a: similar names still land far apart
  for (const ch of name) h = Math.imul(h ^ ch.codePointAt(0), 16777619) >>> 0;
  return HUES[h % HUES.length];
}
function avatar(name) {
  const node = el("span", "avatar", [...name][0] || "?");
  node.style.setProperty("--hue", hue(name));
  node.setAttribute("aria-hidden", "true");
  return node;
}

/* ---------------------------------------------------------------- lobby */

function lobby() {
  const form = $("#join-form");
  const nameInput = $("#name");
  const roomInput = $("#room");
  nameInput.value = storedName();
  (nameInput.value ? roomInput : nameInput).focus();

  const enter = (room) => {
    const name = nameInput.value.trim();
    if (!name) { nameInput.focus(); return; }
    storeName(name);
    location.href = `${base}room/${encodeURIComponent(room)}/`;
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    enter(roomInput.value.trim() || "general");
  });
  for (const chip of document.querySelectorAll(".chip[data-room]")) {
    chip.addEventListener("click", () => { roomInput.value = chip.dataset.room; enter(chip.dataset.room); });
  }

  const list = $("#room-list");
  async function refresh() {
    try {
      const response = await fetch(`${base}api/rooms/`, { headers: { accept: "application/json" } });
      if (!response.ok) return;
      const { rooms } = await response.json();
      list.replaceChildren();
      if (!rooms.length) {
        list.append(el("li", "muted", "Nobody is chatting yet. Start a room!"));
        return;
      }
      for (const room of rooms) {
        const link = el("a");
        link.href = `${base}room/${encodeURIComponent(room.name)}/`;
        link.append(el("span", "", `#${room.name}`),
          el("span", "muted", `${room.people} ${room.people === 1 ? "person" : "people"}`));
        link.addEventListener("click", (event) => { event.preventDefault(); roomInput.value = room.name; enter(room.name); });
        const item = el("li");
        item.append(link);
        list.append(item);
      }
    } catch { /* the server is restarting; try again on the next tick */ }
  }
  refresh();
  setInterval(refresh, 4000);
}

/* ----------------------------------------------------------------- room */

function room() {
  const roomName = document.body.dataset.room;
  const messages = $("#messages");
  const input = $("#message");
  const sendButton = $("#send");
  const status = $("#status");
  const statusText = $("#status-text");
  const retry = $("#retry");
  const typingLine = $("#typing");
  const dialog = $("#name-dialog");

  let name = storedName();
  let socket = null;
  let attempts = 0;          // consecutive failed connections, for the backoff
  let retryTimer = null;
  let countdownTimer = null;
  let welcomed = false;      // got a welcome on this page at least once
  let replacing = false;     // closing on purpose to reconnect (rename)
  const seen = new Set();    // message ids shown, so history + live never repeat
  const typists = new Map(); // name -> timer that forgets them

  function setStatus(state, text) {
    status.dataset.state = state;
    document.body.dataset.state = state;
    statusText.textContent = text;
    retry.hidden = !(state === "reconnecting" || state === "offline");
    const usable = state === "connected";
    input.disabled = sendButton.disabled = !usable;
  }

  const nearBottom = () => messages.scrollHeight - messages.scrollTop - messages.clientHeight < 80;
  function append(node, force) {
    const stick = force || nearBottom();
    messages.querySelector(".empty")?.remove();
    messages.append(node);
    if (stick) messages.scrollTop = messages.scrollHeight;
  }
  function systemLine(text) {
    append(el("li", "system", text));
  }
  function showMessage(message) {
    if (seen.has(message.id)) return;
    seen.add(message.id);
    const mine = message.name === name;
    const item = el("li", mine ? "message mine" : "message");
    item.dataset.id = message.id;
    item.dataset.author = message.name;
    item.dataset.ts = message.ts;
    const previous = messages.lastElementChild;
    if (previous && previous.classList.contains("message") && previous.dataset.author === message.name
        && message.ts - Number(previous.dataset.ts) < 3 * 60 * 1000) {
      item.classList.add("cont");
    }
    const meta = el("div", "meta");
    const when = new Date(message.ts);
    const time = el("time", "", when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
    time.dateTime = when.toISOString();
    meta.append(el("span", "author", message.name), time);
    item.append(avatar(message.name), meta, el("div", "text", message.text));
    append(item, mine);
    stopTyping(message.name);
  }
  function showMembers(members) {
    const list = $("#members");
    list.replaceChildren();
    for (const member of members) {
      const item = el("li", member === name ? "me-row" : "");
      item.dataset.name = member;
      item.append(avatar(member), el("span", "", member));
      list.append(item);
    }
    $("#member-count").textContent = members.length;
  }

  function renderTyping() {
    const names = [...typists.keys()];
    typingLine.textContent =
      names.length === 0 ? "" :
      names.length === 1 ? `${names[0]} is typing` :
      names.length === 2 ? `${names[0]} and ${names[1]} are typing` :
      "Several people are typing";
  }
  function stopTyping(who) {
    clearTimeout(typists.get(who));
    if (typists.delete(who)) renderTyping();
  }
  function startTyping(who) {
    clearTimeout(typists.get(who));
    // Forget a typist who went quiet without saying so (closed the tab).
    typists.set(who, setTimeout(() => stopTyping(who), 6000));
    renderTyping();
  }

  function send(payload) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(payload));
      return true;
    }
    return false;
  }

  function handle(data) {
    switch (data.type) {
      case "welcome": {
        attempts = 0;
        name = data.name;
        $("#me").textContent = name;
        $("#worker").textContent = `served by worker process ${data.worker}`;
        if (!welcomed && !data.history.length) {
          messages.append(el("li", "empty", `This is the start of #${data.room}. Say hi!`));
        }
        for (const message of data.history) showMessage(message);
        systemLine(welcomed ? "Reconnected." : `You joined #${data.room}.`);
        welcomed = true;
        showMembers(data.members);
        setStatus("connected", "Connected");
        input.focus();
        break;
      }
      case "message":
        showMessage(data.message);
        break;
      case "presence":
        showMembers(data.members);
        if (data.event === "leave") stopTyping(data.name);
        if (data.announce && data.name !== name) {
          systemLine(`${data.name} ${data.event === "join" ? "joined" : "left"}.`);
        }
        break;
      case "typing":
        if (data.typing) startTyping(data.name); else stopTyping(data.name);
        break;
      case "error":
        systemLine(data.reason);
        break;
    }
  }

  function url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}${base}ws/chat/${encodeURIComponent(roomName)}/?name=${encodeURIComponent(name)}`;
  }

  function connect() {
    clearTimeout(retryTimer);
    clearInterval(countdownTimer);
    if (socket) return;
    setStatus(welcomed ? "reconnecting" : "connecting", welcomed ? "Reconnecting…" : "Connecting…");
    const ws = new WebSocket(url());
    socket = ws;
    ws.addEventListener("message", (event) => {
      try { handle(JSON.parse(event.data)); } catch (error) { console.error("bad frame", error); }
    });
    ws.addEventListener("close", (event) => {
      if (socket !== ws) return;
      socket = null;
      for (const who of [...typists.keys()]) stopTyping(who);
      if (replacing) { replacing = false; connect(); return; }
      if (event.code >= 4000 && event.code < 5000) {
        // The server refused us for a reason that retrying will not fix.
        setStatus("refused", "Not connected");
        if (event.code === 4001) askName();
        return;
      }
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    // Exponential backoff with jitter, capped: 0.5 s, 1 s, 2 s, ... 10 s, so
    // a restarted server is not stampeded by every tab at the same moment.
    const delay = Math.min(10000, 500 * 2 ** attempts) * (0.75 + Math.random() * 0.5);
    attempts += 1;
    const due = Date.now() + delay;
    const tick = () => {
      const left = Math.max(0, Math.ceil((due - Date.now()) / 1000));
      setStatus(navigator.onLine === false ? "offline" : "reconnecting",
        left > 0 ? `Reconnecting in ${left}s…` : "Reconnecting…");
    };
    tick();
    countdownTimer = setInterval(tick, 250);
    retryTimer = setTimeout(connect, delay);
  }

  retry.addEventListener("click", connect);
  window.addEventListener("online", () => { if (!socket) connect(); });

  $("#composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    if (send({ type: "message", text })) {
      input.value = "";
      typingSent = 0;
      clearTimeout(idleTimer);
    }
  });

  // Typing indicator: say "typing" at most every 2.5 s while keys are
  // pressed, and "stopped" after 3 s of quiet or when the field is emptied.
  let typingSent = 0;
  let idleTimer = null;
  input.addEventListener("input", () => {
    clearTimeout(idleTimer);
    if (!input.value.trim()) {
      if (typingSent) send({ type: "typing", typing: false });
      typingSent = 0;
      return;
    }
    if (Date.now() - typingSent > 2500 && send({ type: "typing", typing: true })) typingSent = Date.now();
    idleTimer = setTimeout(() => { send({ type: "typing", typing: false }); typingSent = 0; }, 3000);
  });

  function askName() {
    const field = $("#name-input");
    field.value = name;
    if (!dialog.open) dialog.showModal();
    field.focus();
  }
  $("#name-form").addEventListener("submit", () => {
    const chosen = $("#name-input").value.trim();
    if (!chosen) return;
    const changed = chosen !== name;
    name = chosen;
    storeName(name);
    if (socket && changed) { replacing = true; socket.close(1000); }
    else if (!socket) connect();
  });
  dialog.addEventListener("cancel", (event) => { if (!name) event.preventDefault(); });
  $("#rename").addEventListener("click", askName);

  if (name) connect(); else { setStatus("connecting", "Pick a name"); askName(); }
}

if (document.body.dataset.page === "lobby") lobby();
if (document.body.dataset.page === "room") room();
