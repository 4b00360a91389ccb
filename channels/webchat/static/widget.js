/*
 * Servicehub chat widget. Plain JavaScript, no build step.
 *
 *   <script src="https://HUB/widget.js" data-hub="https://HUB" async></script>
 *
 * Optional: data-title, data-color on the tag; window.ServicehubSettings =
 * {user: {user_id, email, name, user_hash}} before it for logged-in users.
 * API: window.ServicehubWidget.open() / close() / toggle(). Calls made before
 * the script loaded can be queued: window.ServicehubWidget = {q: [["open"]]}.
 *
 * User text is only ever put in the page with textContent (never as HTML).
 * The WebSocket protocol is documented in channels/webchat/__init__.py.
 */
(function () {
  "use strict";

  var previous = window.ServicehubWidget;
  if (previous && previous._loaded) return;

  var script = document.currentScript ||
    document.querySelector('script[src*="widget.js"][data-hub]') ||
    document.querySelector('script[src*="widget.js"]');
  var hub = (script && script.getAttribute("data-hub")) || (script && script.src ? new URL(script.src, location.href).origin : location.origin);
  hub = hub.replace(/\/+$/, "");
  var WS_URL = hub.replace(/^http/, "ws") + "/channels/webchat/ws";
  var STORE = "servicehub:" + hub + ":";
  var settings = window.ServicehubSettings || {};
  var SVG_NS = "http://www.w3.org/2000/svg";
  var HISTORY_PAGE = 200;  // the hub's largest history frame (HISTORY_MAX)

  // --- storage (may be unavailable: private mode, blocked cookies) ----------
  function load(key, fallback) {
    try {
      var raw = window.localStorage.getItem(STORE + key);
      return raw === null ? fallback : JSON.parse(raw);
    } catch (e) { return fallback; }
  }
  function save(key, value) {
    try {
      if (value === null || value === undefined) window.localStorage.removeItem(STORE + key);
      else window.localStorage.setItem(STORE + key, JSON.stringify(value));
    } catch (e) { /* keep working in memory */ }
  }

  // --- state ----------------------------------------------------------------
  var state = {
    token: load("token", null),
    outbox: load("outbox", []),        // [{client_id, text, contact?}] not yet acked
    contact: load("contact", null),    // pre-chat form {name, email}
    contactSent: load("contactSent", false),
    inFlight: {},                      // client_id -> true while waiting for its ack
    seen: {},                          // server id -> true (never shown twice)
    lastId: null,                      // newest server id received from the hub (read receipts)
    // Newest id a history frame brought: everything up to it is shown. Live
    // frames are best effort (another hub instance relays them, and a relay
    // can lose one), so a reconnect resumes from here, never from lastId.
    syncedId: null,
    synced: false,                     // history arrived on this page
    socket: null,
    connected: false,
    welcomes: 0,                       // welcome frames on this page (connects + reconnects)
    attempt: 0,
    reconnectTimer: null,
    flushTimer: null,
    open: false,
    unread: 0,
    config: { title: "Support", greeting: "", color: null, max_chars: 4000 },
    agentsOnline: true,
    identity: "anonymous",
    offline: false,
    lastTypingSent: 0,
    typingTimer: null,
    readTimer: null,
    readSent: null
  };

  function newClientId() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID().replace(/-/g, "");
    var out = "";
    for (var i = 0; i < 32; i++) out += Math.floor(Math.random() * 16).toString(16);
    return out;
  }

  // --- DOM helpers ----------------------------------------------------------
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        if (key === "text") node.textContent = attrs[key];
        else if (key === "className") node.className = attrs[key];
        else node.setAttribute(key, attrs[key]);
      });
    }
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }
  function icon(paths, size) {
    var svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", size || 24);
    svg.setAttribute("height", size || 24);
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    paths.forEach(function (d) {
      var path = document.createElementNS(SVG_NS, "path");
      path.setAttribute("d", d);
      svg.appendChild(path);
    });
    return svg;
  }
  var ICON_CHAT = ["M12 3C6.5 3 2 6.9 2 11.7c0 2.6 1.3 4.9 3.4 6.5L4.6 22l4.3-2.3c1 .3 2 .4 3.1.4 5.5 0 10-3.9 10-8.7S17.5 3 12 3z"];
  var ICON_CLOSE = ["M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12l5.6 5.6-1.4 1.4-5.6-5.6L6.4 19 5 17.6l5.6-5.6L5 6.4z"];
  var ICON_DOWN = ["M7.4 8.6 12 13.2l4.6-4.6L18 10l-6 6-6-6z"];
  var ICON_SEND = ["M3.4 20.4 21 12 3.4 3.6 3.4 10l12.6 2-12.6 2z"];

  // --- build the widget in a shadow root ------------------------------------
  var host = document.createElement("servicehub-widget");
  host.setAttribute("data-servicehub", "");
  host.style.setProperty("display", "block", "important");
  host.style.setProperty("position", "static", "important");
  var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;

  var stylesheet = el("link", { rel: "stylesheet", href: hub + "/widget.css" });
  var frame = el("div", { className: "shw", "data-state": "closed" });
  frame.style.visibility = "hidden";
  stylesheet.onload = stylesheet.onerror = function () { frame.style.visibility = ""; };

  var badge = el("span", { className: "badge", "aria-hidden": "true" });
  badge.hidden = true;
  var launcher = el("button", {
    className: "launcher", type: "button", "aria-label": "Open chat", "aria-expanded": "false",
    "aria-controls": "shw-panel", "aria-haspopup": "dialog"
  }, [
    (function () { var s = el("span", { className: "launcher-icon launcher-icon--chat" }); s.appendChild(icon(ICON_CHAT, 28)); return s; })(),
    (function () { var s = el("span", { className: "launcher-icon launcher-icon--close" }); s.appendChild(icon(ICON_DOWN, 30)); return s; })(),
    badge
  ]);

  var avatar = el("div", { className: "avatar avatar--header", "aria-hidden": "true" });
  var presence = el("span", { className: "presence", "aria-hidden": "true" });
  var title = el("h2", { className: "title", id: "shw-title" });
  var subtitle = el("p", { className: "subtitle" });
  var closeButton = el("button", { className: "close", type: "button", "aria-label": "Close chat" }, [icon(ICON_CLOSE, 20)]);
  var header = el("header", { className: "header" }, [
    el("div", { className: "avatar-wrap" }, [avatar, presence]),
    el("div", { className: "heading" }, [title, subtitle]),
    closeButton
  ]);
  var status = el("div", { className: "status", role: "status", "aria-live": "polite" });
  var log = el("ol", { className: "log", role: "log", "aria-live": "polite", "aria-label": "Conversation", tabindex: "0" });
  var greeting = el("li", { className: "msg msg--team msg--greeting" });
  var typing = el("li", { className: "msg msg--team typing", "aria-label": "Typing" });
  typing.hidden = true;

  var input = el("textarea", {
    className: "input", id: "shw-input", rows: "1", placeholder: "Write a message\u2026",
    "aria-label": "Message", autocomplete: "off"
  });
  var sendButton = el("button", { className: "send", type: "submit", "aria-label": "Send message", disabled: "" }, [icon(ICON_SEND, 20)]);
  var composer = el("form", { className: "composer", "aria-label": "Send a message" }, [
    el("label", { className: "sr-only", for: "shw-input", text: "Message" }), input, sendButton
  ]);
  var brand = el("p", { className: "brand", text: "Powered by Servicehub" });
  var panel = el("section", {
    className: "panel", id: "shw-panel", role: "dialog", "aria-modal": "false", "aria-label": "Chat"
  }, [header, status, log, composer, brand]);
  panel.hidden = true;

  frame.appendChild(panel);
  frame.appendChild(launcher);
  root.appendChild(stylesheet);
  root.appendChild(frame);

  // --- rendering --------------------------------------------------------------
  function timeLabel(iso) {
    var date = iso ? new Date(iso) : new Date();
    if (isNaN(date.getTime())) date = new Date();
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  function teamName(author) {
    return author === "bot" ? state.config.title + " \u00b7 Bot" : state.config.title;
  }
  function initial(text) {
    return (text || "S").trim().charAt(0).toUpperCase() || "S";
  }

  function applyConfig() {
    var config = state.config;
    var color = (script && script.getAttribute("data-color")) || config.color;
    if (color && /^#[0-9a-fA-F]{6}$/.test(color)) frame.style.setProperty("--shw-accent", color);
    var name = (script && script.getAttribute("data-title")) || config.title || "Support";
    config.title = name;
    title.textContent = name;
    avatar.textContent = initial(name);
    // Away: the header says so once; when the team is back and how the reply
    // comes is in the handoff message (the hub writes it), not repeated here.
    subtitle.textContent = state.agentsOnline ? "We typically reply in a few minutes" : "We're away right now";
    presence.setAttribute("data-online", state.agentsOnline ? "true" : "false");
    panel.setAttribute("aria-label", "Chat with " + name);
    greeting.textContent = "";
    greeting.appendChild(el("span", { className: "avatar", "aria-hidden": "true", text: initial(name) }));
    greeting.appendChild(el("div", { className: "body" }, [
      el("span", { className: "author", text: name }),
      el("div", { className: "bubble", text: config.greeting || "Hi there! How can we help?" })
    ]));
    typing.textContent = "";
    typing.appendChild(el("span", { className: "avatar", "aria-hidden": "true", text: initial(name) }));
    typing.appendChild(el("div", { className: "body" }, [
      el("div", { className: "bubble" }, [el("span", { className: "dot" }), el("span", { className: "dot" }), el("span", { className: "dot" })])
    ]));
    input.setAttribute("maxlength", String(config.max_chars || 4000));
    renderPrechat();
  }

  function messageNode(message, pending) {
    var mine = message.author === "customer";
    var li = el("li", { className: "msg " + (mine ? "msg--customer" : "msg--team") });
    if (message.id !== undefined && message.id !== null) li.setAttribute("data-id", String(message.id));
    if (message.client_id) li.setAttribute("data-client-id", message.client_id);
    var body = el("div", { className: "body" });
    if (!mine) {
      li.appendChild(el("span", { className: "avatar", "aria-hidden": "true", text: initial(state.config.title) }));
      body.appendChild(el("span", { className: "author", text: teamName(message.author) }));
    }
    body.appendChild(el("div", { className: "bubble", text: message.text }));
    var meta = el("span", { className: "meta", text: pending ? "Sending\u2026" : timeLabel(message.created_at) });
    body.appendChild(meta);
    li.appendChild(body);
    if (pending) li.classList.add("msg--pending");
    if (typeof message.survey_id === "number") body.appendChild(surveyNode(message.survey_id, message.survey_low, message.survey_high));
    if (!mine && Array.isArray(message.choices) && message.choices.length) body.appendChild(choicesNode(message.choices));
    return li;
  }

  // A clarifying question's answers (the articles the bot offers): a click
  // sends the title as the visitor's message, as if typed; once, then the
  // buttons are spent.
  function choicesNode(choices) {
    var node = el("div", { className: "choices", role: "group", "aria-label": "Suggested answers" });
    choices.forEach(function (choice) {
      if (typeof choice !== "string" || !choice) return;
      var button = el("button", { type: "button", className: "choice", text: choice });
      button.addEventListener("click", function () {
        Array.prototype.forEach.call(node.querySelectorAll("button"), function (b) { b.disabled = true; });
        button.classList.add("choice--chosen");
        input.value = choice;
        submit();
      });
      node.appendChild(button);
    });
    return node;
  }

  // A survey: a rating button per answer (CSAT 1-5, NPS 0-10), then an optional
  // comment (frames survey / survey_answer / survey_result; the hub answers each once).
  function surveyNode(surveyId, low, high) {
    if (typeof low !== "number" || typeof high !== "number") { low = 1; high = 5; }
    var node = el("div", { className: "survey", role: "group", "aria-label": high === 10 ? "How likely are you to recommend us" : "Rate this conversation", "data-survey-id": String(surveyId) });
    var buttons = el("div", { className: "survey-buttons" });
    var ratings = [];
    for (var r = low; r <= high; r++) ratings.push(r);
    ratings.forEach(function (rating) {
      var button = el("button", { type: "button", className: "survey-rate", "data-rating": String(rating), "aria-label": "Rate " + rating + " out of " + high, text: String(rating) });
      button.addEventListener("click", function () {
        send({ type: "survey_answer", survey_id: surveyId, rating: rating });
        Array.prototype.forEach.call(buttons.querySelectorAll("button"), function (b) { b.disabled = true; });
        button.classList.add("survey-rate--chosen");
      });
      buttons.appendChild(button);
    });
    var comment = el("textarea", { className: "survey-comment-text", rows: "2", maxlength: "2000", "aria-label": "Add a comment (optional)", placeholder: "Add a comment (optional)" });
    var form = el("form", { className: "survey-comment" }, [comment, el("button", { type: "submit", className: "survey-comment-send", text: "Send" })]);
    form.hidden = true;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = comment.value.trim();
      if (!text) return;
      send({ type: "survey_answer", survey_id: surveyId, comment: text });
      form.hidden = true;
    });
    node.appendChild(buttons);
    node.appendChild(form);
    node.appendChild(el("p", { className: "survey-result", role: "status" }));
    return node;
  }

  function surveyById(surveyId) {
    return log.querySelector('.survey[data-survey-id="' + String(Number(surveyId)) + '"]');
  }

  function onSurveyResult(frame) {
    var node = surveyById(frame.survey_id);
    if (!node) return;
    node.querySelector(".survey-result").textContent = frame.text || "";
    Array.prototype.forEach.call(node.querySelectorAll(".survey-rate"), function (b) { b.disabled = true; });
    var form = node.querySelector(".survey-comment");
    if (frame.outcome === "recorded" && !node.getAttribute("data-rated")) {
      node.setAttribute("data-rated", "1");
      form.hidden = false;
    } else {
      form.hidden = true;
    }
  }

  function findByClientId(clientId) {
    var nodes = log.querySelectorAll("li[data-client-id]");
    for (var i = 0; i < nodes.length; i++) if (nodes[i].getAttribute("data-client-id") === clientId) return nodes[i];
    return null;
  }

  // Keep server messages ordered by id; unsent ones stay at the end.
  function place(li, id) {
    var nodes = log.children;
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i];
      if (node === li || node === greeting || node === prechat) continue;
      if (node === typing) break;
      var otherId = node.getAttribute("data-id");
      if (otherId === null || Number(otherId) > id) { log.insertBefore(li, node); return; }
    }
    log.insertBefore(li, typing);
  }

  function settle(li, message) {
    li.classList.remove("msg--pending", "msg--failed");
    li.setAttribute("data-id", String(message.id));
    var meta = li.querySelector(".meta");
    if (meta) meta.textContent = timeLabel(message.created_at);
    place(li, message.id);
  }

  function show(message, live) {
    if (typeof message.id !== "number" || state.seen[message.id]) return false;
    state.seen[message.id] = true;
    var existing = message.client_id ? findByClientId(message.client_id) : null;
    if (existing) {
      settle(existing, message);
      dropFromOutbox(message.client_id);
    } else {
      place(messageNode(message, false), message.id);
    }
    if (message.author !== "customer") {
      setTyping(false);
      if (live && !isVisible()) { state.unread += 1; renderBadge(); }
    }
    scrollDown();
    return true;
  }

  function showPending(item) {
    if (findByClientId(item.client_id)) return;
    var li = messageNode({ author: "customer", text: item.text, client_id: item.client_id }, true);
    log.insertBefore(li, typing);
    scrollDown();
  }

  function markFailed(clientId, reason) {
    var li = findByClientId(clientId);
    if (!li) return;
    li.classList.remove("msg--pending");
    li.classList.add("msg--failed");
    var meta = li.querySelector(".meta");
    if (meta) meta.textContent = "Not sent: " + reason;
  }

  function scrollDown() {
    log.scrollTop = log.scrollHeight;
  }
  function renderBadge() {
    badge.hidden = state.unread === 0;
    badge.textContent = state.unread > 9 ? "9+" : String(state.unread);
    launcher.setAttribute("aria-label", state.unread ? "Open chat, " + state.unread + " unread" : "Open chat");
  }
  function setStatus(text) {
    status.textContent = text || "";
    status.classList.toggle("status--shown", !!text);
  }
  function setTyping(active) {
    clearTimeout(state.typingTimer);
    typing.hidden = !active;
    if (active) {
      state.typingTimer = setTimeout(function () { typing.hidden = true; }, 10000);
      scrollDown();
    }
  }
  function isVisible() {
    return state.open && document.visibilityState !== "hidden";
  }

  // --- pre-chat / offline card ---------------------------------------------
  var prechat = null;
  var prechatKey = null;
  function renderPrechat() {
    var hasEmail = state.contact && state.contact.email;
    var away = state.offline || !state.agentsOnline;
    // applyConfig() runs on every welcome (each reconnect): rebuild the card
    // only when what it shows changes, so a visitor typing into the form
    // never loses what they typed to a late welcome.
    var key = [state.identity === "verified", hasEmail ? state.contact.email : "", away,
      !!(state.contact && state.contact.skipped)].join("|");
    if (key === prechatKey) return;
    prechatKey = key;
    var typed = {};
    var focused = null;
    if (prechat) {
      Array.prototype.forEach.call(prechat.querySelectorAll("input"), function (field) {
        typed[field.name] = field.value;
        if (root.activeElement === field) focused = field.name;
      });
      prechat.remove();
      prechat = null;
    }
    if (state.identity === "verified") return;
    if (state.contact && state.contact.skipped && !away) return;
    prechat = el("li", { className: "card" + (away ? " card--offline" : "") });
    if (hasEmail) {
      prechat.appendChild(el("p", { className: "card-text card-text--done", text: away
        ? "Thanks! We'll reply to " + state.contact.email + " as soon as we're back."
        : "Thanks! If you leave, we'll reply to " + state.contact.email + "." }));
      log.insertBefore(prechat, typing);
      return;
    }
    prechat.appendChild(el("p", { className: "card-title", text: away ? "Get our reply by email" : "Get notified by email" }));
    prechat.appendChild(el("p", { className: "card-text", text: away ? "Leave your email and we'll reply by email." : "Tell us how to reach you if you leave (optional)." }));
    var nameInput = el("input", { className: "field", type: "text", name: "name", placeholder: "Your name", "aria-label": "Your name", autocomplete: "name", maxlength: "200" });
    var emailInput = el("input", { className: "field", type: "email", name: "email", placeholder: "you@example.com", "aria-label": "Your email", autocomplete: "email", maxlength: "254" });
    if (state.contact && state.contact.name) nameInput.value = state.contact.name;
    if (typed.name) nameInput.value = typed.name;
    if (typed.email) emailInput.value = typed.email;
    var error = el("p", { className: "card-error", role: "alert" });
    var buttons = el("div", { className: "card-actions" }, [
      el("button", { className: "button", type: "submit", text: "Save" })
    ]);
    if (!away) {
      var skip = el("button", { className: "button button--quiet", type: "button", text: "Skip" });
      skip.addEventListener("click", function () {
        state.contact = { skipped: true };
        save("contact", state.contact);
        renderPrechat();
        input.focus();
      });
      buttons.appendChild(skip);
    }
    var form = el("form", { className: "card-form", "aria-label": "Your contact details" }, [nameInput, emailInput, error, buttons]);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var name = nameInput.value.trim();
      var email = emailInput.value.trim();
      if (email && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email)) { error.textContent = "Please check your email address."; emailInput.focus(); return; }
      if (!name && !email) { error.textContent = "Add your name or email, or skip."; return; }
      state.contact = { name: name || undefined, email: email || undefined };
      state.contactSent = false;
      save("contact", state.contact);
      save("contactSent", false);
      renderPrechat();
      input.focus();
    });
    prechat.appendChild(form);
    log.insertBefore(prechat, typing);
    if (focused === "name") nameInput.focus();
    else if (focused === "email") emailInput.focus();
  }

  // --- the socket ---------------------------------------------------------------
  function send(frame) {
    if (!state.socket || state.socket.readyState !== 1) return false;
    state.socket.send(JSON.stringify(frame));
    return true;
  }

  function connect() {
    if (state.socket || !("WebSocket" in window)) return;
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    var socket;
    try { socket = new WebSocket(WS_URL); } catch (e) { scheduleReconnect(); return; }
    state.socket = socket;
    socket.onopen = function () {
      var hello = { type: state.token ? "resume" : "hello" };
      if (state.token) hello.token = state.token;
      if (state.synced && state.syncedId !== null) hello.after_id = state.syncedId;
      if (settings.user) hello.user = settings.user;
      socket.send(JSON.stringify(hello));
    };
    socket.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame && typeof frame.type === "string") receive(frame);
    };
    socket.onclose = function (event) {
      if (state.socket !== socket) return;
      state.socket = null;
      state.connected = false;
      state.inFlight = {};
      clearTimeout(state.flushTimer);
      if (event.code === 4401) {  // our token was refused: start over as a new visitor
        state.token = null;
        save("token", null);
        state.attempt = 0;
      }
      scheduleReconnect();
    };
    socket.onerror = function () { /* onclose follows */ };
  }

  function scheduleReconnect() {
    if (state.reconnectTimer) return;
    var cap = Math.min(15000, 500 * Math.pow(2, state.attempt));
    var delay = cap / 2 + Math.random() * cap / 2;
    state.attempt += 1;
    if (state.attempt > 2) setStatus("Reconnecting\u2026");
    state.reconnectTimer = setTimeout(function () { state.reconnectTimer = null; connect(); }, delay);
  }

  function receive(frame) {
    switch (frame.type) {
      case "welcome":
        state.welcomes += 1;
        state.connected = true;
        state.attempt = 0;
        setStatus("");
        state.token = frame.token;
        save("token", frame.token);
        state.identity = frame.identity || "anonymous";
        state.agentsOnline = frame.agents_online !== false;
        if (frame.config) {
          ["title", "greeting", "color", "max_chars"].forEach(function (key) {
            if (frame.config[key] !== undefined && frame.config[key] !== null) state.config[key] = frame.config[key];
          });
        }
        applyConfig();
        break;
      case "history":
        var messages = frame.messages || [];
        messages.forEach(function (message) {
          show(message, false);
          if (state.lastId === null || message.id > state.lastId) state.lastId = message.id;
          if (typeof message.id === "number" && (state.syncedId === null || message.id > state.syncedId)) state.syncedId = message.id;
        });
        // An empty first history: the conversation had nothing yet, so
        // everything from here on is after id 0.
        if (state.syncedId === null && messages.length === 0) state.syncedId = 0;
        // A full page after a resume point: there is more to catch up on.
        if (messages.length >= HISTORY_PAGE && state.syncedId !== null) send({ type: "history", after_id: state.syncedId, limit: HISTORY_PAGE });
        state.synced = true;
        flush();
        markRead();
        break;
      case "message":
        var message = frame.message || {};
        show(message, true);
        if (message.author !== "customer" && typeof message.id === "number" && (state.lastId === null || message.id > state.lastId)) {
          state.lastId = message.id;
        }
        markRead();
        break;
      case "ack":
        delete state.inFlight[frame.client_id];
        if (frame.message) {
          if (state.contact && !state.contactSent && !state.contact.skipped) { state.contactSent = true; save("contactSent", true); }
          show(frame.message, false);
        }
        dropFromOutbox(frame.client_id);
        break;
      case "typing":
        setTyping(!!frame.active);
        break;
      case "read":
        if (isVisible()) break;
        state.unread = 0;
        renderBadge();
        break;
      case "survey":
        var asked = log.querySelector('li[data-id="' + String(Number(frame.message_id)) + '"] .body');
        if (asked && typeof frame.survey_id === "number" && !surveyById(frame.survey_id)) {
          asked.appendChild(surveyNode(frame.survey_id, frame.low, frame.high));
          scrollDown();
        }
        break;
      case "survey_result":
        onSurveyResult(frame);
        break;
      case "offline":
        state.offline = true;
        state.agentsOnline = false;
        applyConfig();
        break;
      case "error":
        onError(frame);
        break;
    }
  }

  function onError(frame) {
    var ref = frame.ref;
    if (!ref || !state.inFlight[ref]) return;
    delete state.inFlight[ref];
    if (frame.code === "rate_limited" || frame.code === "unavailable" || frame.code === "internal_error") {
      var wait = Math.max(250, Math.round((frame.retry_after || 2) * 1000));
      clearTimeout(state.flushTimer);
      state.flushTimer = setTimeout(flush, wait);
      return;
    }
    markFailed(ref, frame.message || "could not send");
    dropFromOutbox(ref);
  }

  function dropFromOutbox(clientId) {
    var before = state.outbox.length;
    state.outbox = state.outbox.filter(function (item) { return item.client_id !== clientId; });
    if (state.outbox.length !== before) save("outbox", state.outbox);
  }

  // Send everything not yet acked, in order; the hub drops repeats by client_id.
  function flush() {
    if (!state.connected) return;
    for (var i = 0; i < state.outbox.length; i++) {
      var item = state.outbox[i];
      if (state.inFlight[item.client_id]) continue;
      var frame = { type: "message", client_id: item.client_id, text: item.text };
      if (state.contact && !state.contactSent && !state.contact.skipped) frame.contact = { name: state.contact.name, email: state.contact.email };
      if (!send(frame)) return;
      state.inFlight[item.client_id] = true;
    }
  }

  // At most one read receipt a second, for the newest message.
  function markRead() {
    if (!isVisible() || state.lastId === null) return;
    state.unread = 0;
    renderBadge();
    if (state.readTimer || state.lastId === state.readSent) return;
    state.readTimer = setTimeout(function () {
      state.readTimer = null;
      if (state.lastId !== state.readSent && send({ type: "read", last_id: state.lastId })) state.readSent = state.lastId;
    }, 1000);
  }

  // --- user actions -----------------------------------------------------------
  function submit() {
    var text = input.value.trim();
    if (!text) return;
    var max = state.config.max_chars || 4000;
    if (text.length > max) { setStatus("Messages are limited to " + max + " characters."); return; }
    var item = { client_id: newClientId(), text: text };
    state.outbox.push(item);
    save("outbox", state.outbox);
    input.value = "";
    autosize();
    showPending(item);
    if (state.connected) flush(); else connect();
  }

  function autosize() {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 120) + "px";
    if (input.value.trim()) sendButton.removeAttribute("disabled"); else sendButton.setAttribute("disabled", "");
  }

  function open() {
    if (state.open) return;
    state.open = true;
    panel.hidden = false;
    frame.setAttribute("data-state", "open");
    launcher.setAttribute("aria-expanded", "true");
    launcher.setAttribute("aria-label", "Close chat");
    connect();
    scrollDown();
    markRead();
    setTimeout(function () { input.focus(); }, 30);
  }
  function close() {
    if (!state.open) return;
    state.open = false;
    panel.hidden = true;
    frame.setAttribute("data-state", "closed");
    launcher.setAttribute("aria-expanded", "false");
    renderBadge();
    launcher.focus();
  }
  function toggle() { if (state.open) close(); else open(); }

  launcher.addEventListener("click", toggle);
  closeButton.addEventListener("click", close);
  panel.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { event.preventDefault(); close(); }
  });
  composer.addEventListener("submit", function (event) { event.preventDefault(); submit(); input.focus(); });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); submit(); }
  });
  input.addEventListener("input", function () {
    autosize();
    var now = Date.now();
    if (state.connected && input.value && now - state.lastTypingSent > 3000) {
      state.lastTypingSent = now;
      send({ type: "typing", active: true });
    }
  });
  window.addEventListener("online", function () { if (!state.socket) { state.attempt = 0; connect(); } });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") { markRead(); if (!state.socket && state.outbox.length) connect(); }
  });

  // --- start ------------------------------------------------------------------
  log.appendChild(greeting);
  log.appendChild(typing);
  applyConfig();
  state.outbox.forEach(showPending);

  function mount() {
    (document.body || document.documentElement).appendChild(host);
    // A returning visitor (or one with unsent messages) reconnects at once to
    // get replies that came while away; a new one connects when opening the chat.
    if (state.token || state.outbox.length) connect();
  }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);

  var api = {
    _loaded: true,
    open: open,
    close: close,
    toggle: toggle,
    isOpen: function () { return state.open; },
    isConnected: function () { return state.connected; },
    get _welcomes() { return state.welcomes; },  // tests: how many welcomes arrived
    reconnect: function () { if (state.socket) state.socket.close(); else connect(); }
  };
  window.ServicehubWidget = api;
  if (previous && Array.isArray(previous.q)) {
    previous.q.forEach(function (call) {
      var name = call && call[0];
      if (typeof api[name] === "function") api[name].apply(null, call.slice(1));
    });
  }
})();
