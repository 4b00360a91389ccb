// The console's conversation page: actions without reloading, live updates,
// the reply box's channel limits, the typing indicator, the knowledge-base
// search and the page's keyboard shortcuts. An ES module (console.js adds the
// CSRF header to every fetch; the forms also carry the token), no build, no CDN.
import { registerShortcut } from "./console.js";

(function () {

  var root = document.getElementById("conv");
  if (!root) return;
  var conversationId = root.dataset.conversationId;
  var base = "/console/conversations/" + conversationId;
  var canWrite = root.dataset.canWrite === "true";
  var list = document.getElementById("timeline-list");
  var timelineBox = document.getElementById("timeline");
  var panel = document.getElementById("conv-panel");

  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function post(url, form) {
    var body = new URLSearchParams();
    if (form) {
      new FormData(form).forEach(function (value, key) {
        if (typeof value === "string" && key !== "csrf_token") body.append(key, value);
      });
    }
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRF-Token": csrf() },
      body: body,
    });
  }

  async function failure(response) {
    try {
      var data = await response.json();
      if (data && data.error && data.error.message) return data.error.message;
    } catch (err) { /* not JSON */ }
    return "The action failed (" + response.status + ").";
  }

  function showError(id, text) {
    var box = document.getElementById(id);
    if (!box) return;
    box.textContent = text || "";
    box.hidden = !text;
  }

  // --- the timeline: newer entries live, older ones on demand -----------------------------
  function nearBottom() {
    return timelineBox.scrollHeight - timelineBox.scrollTop - timelineBox.clientHeight < 80;
  }

  function scrollToEnd() {
    timelineBox.scrollTop = timelineBox.scrollHeight;
  }

  function fragment(html) {
    var template = document.createElement("template");
    template.innerHTML = html; // server-rendered, autoescaped partial
    return template.content;
  }

  var fetchingNewer = null;
  var wantNewer = false;

  async function loadNewer() {
    if (fetchingNewer) { wantNewer = true; return fetchingNewer; }
    fetchingNewer = (async function () {
      // No entry yet: everything after message 0 (the cursor of hub.conversations.timeline).
      var cursor = root.dataset.nextCursor || "bTow";
      var url = base + "/timeline?after=" + encodeURIComponent(cursor);
      var response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) return;
      var stick = nearBottom();
      var items = fragment(await response.text());
      Array.prototype.slice.call(items.querySelectorAll("li.entry")).forEach(function (li) {
        if (!document.getElementById(li.id)) list.appendChild(li);
      });
      var next = response.headers.get("X-Next-Cursor");
      if (next) root.dataset.nextCursor = next;
      if (stick) scrollToEnd();
    })();
    try { await fetchingNewer; } finally {
      fetchingNewer = null;
      if (wantNewer) { wantNewer = false; await loadNewer(); }
    }
  }

  // Entries whose delivery is still under way are read again until it settles
  // (the web chat's "delivered" comes from the outbox, with no event of its own),
  // and at once when the live stream reports a delivery.
  var PENDING = ".delivery--queued, .delivery--sending";
  var recheckTimer = null, rechecks = 0;
  async function rerender(ids) {
    if (!ids.length) return;
    var response = await fetch(base + "/timeline?ids=" + ids.slice(0, 50).join(","), { credentials: "same-origin" });
    if (!response.ok) return;
    var items = fragment(await response.text());
    Array.prototype.slice.call(items.querySelectorAll("li.entry")).forEach(function (li) {
      var shown = document.getElementById(li.id);
      if (shown) shown.replaceWith(li);
    });
  }
  function pendingIds() {
    return Array.prototype.map.call(list.querySelectorAll(PENDING), function (el) {
      return el.closest("li.entry").dataset.id;
    });
  }
  function recheckSoon() {
    clearTimeout(recheckTimer);
    if (!pendingIds().length) { rechecks = 0; return; }
    if (rechecks >= 20) return; // stuck in the outbox: the next event or a reload shows it
    recheckTimer = setTimeout(async function () {
      rechecks += 1;
      await rerender(pendingIds());
      recheckSoon();
    }, Math.min(500 * (rechecks + 1), 5000));
  }

  var earlier = document.getElementById("load-earlier");
  if (earlier) {
    earlier.addEventListener("click", async function () {
      var cursor = root.dataset.prevCursor;
      if (!cursor) return;
      var response = await fetch(base + "/timeline?before=" + encodeURIComponent(cursor), { credentials: "same-origin" });
      if (!response.ok) return;
      var height = timelineBox.scrollHeight;
      var items = fragment(await response.text());
      list.insertBefore(items, list.firstChild);
      timelineBox.scrollTop += timelineBox.scrollHeight - height; // keep what the agent was reading in place
      var prev = response.headers.get("X-Prev-Cursor");
      root.dataset.prevCursor = prev || "";
      if (!prev) earlier.parentElement.hidden = true;
    });
  }

  async function loadPanel() {
    var response = await fetch(base + "/panel", { credentials: "same-origin" });
    if (!response.ok) return;
    var focused = document.activeElement && panel.contains(document.activeElement) ? document.activeElement.id : null;
    var fresh = fragment(await response.text());
    // The header's status, priority and handler come with the panel.
    var meta = fresh.querySelector("#conv-meta-fresh");
    if (meta) {
      var current = document.getElementById("conv-meta");
      if (current) current.replaceWith(meta.content.cloneNode(true));
      meta.remove();
    }
    panel.replaceChildren(fresh);
    bindForms(panel);
    if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
  }

  // Bursts of events become one round of requests; an event that arrives while
  // a round is in flight gets one more round after it (never lost).
  var refreshing = null;
  var refreshAgain = false;
  function refresh() {
    if (refreshing) { refreshAgain = true; return refreshing; }
    refreshing = (async function () {
      await new Promise(function (resolve) { setTimeout(resolve, 30); });
      do {
        refreshAgain = false;
        await Promise.all([loadNewer(), loadPanel()]);
      } while (refreshAgain);
      recheckSoon();
    })().finally(function () { refreshing = null; });
    return refreshing;
  }

  // --- live: the console's event stream (hub.console.live), polling as a fallback --------
  var pollTimer = null;
  function startPolling() {
    if (pollTimer) return;
    pollTimer = setInterval(refresh, 3000);
  }

  // The timeline is the contact's: a change to any of their conversations concerns this page.
  var mine = new Set((root.dataset.conversations || conversationId).split(" ").filter(Boolean));
  var contactId = root.dataset.contactId;

  function onChange(event) {
    var change;
    try { change = JSON.parse(event.data); } catch (err) { return; }
    if (change.what === "contact" && String(change.contact_id) === contactId) {
      // Erased: nothing left to show; merged into another contact: that contact's page now.
      if (change.change === "erased") window.location.assign("/console");
      else window.location.reload();
      return;
    }
    if (change.conversation_id === undefined || !mine.has(String(change.conversation_id))) return;
    if (change.what === "delivery" && change.message_id) rerender([String(change.message_id)]);
    else refresh();
  }

  if (window.EventSource) {
    var stream = new EventSource("/console/events");
    stream.addEventListener("change", onChange);
    stream.addEventListener("resync", function () { refresh(); });
    stream.addEventListener("hello", function () {
      // (Re)connected: catch up on what happened while the stream was down.
      if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
      refresh();
    });
    stream.onerror = function () { if (stream.readyState === EventSource.CLOSED) startPolling(); };
    window.addEventListener("pagehide", function () { stream.close(); });
  } else {
    startPolling();
  }

  // --- actions -------------------------------------------------------------------------
  function errorBoxFor(form) {
    if (form.closest(".panel--admin")) return "admin-error";
    if (form.closest("#composer")) return "composer-error";
    return "action-error";
  }

  async function submitAction(form, event) {
    event.preventDefault();
    var action = form.dataset.action;
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    if (action === "snooze") {
      var offset = form.querySelector('[name="tz_offset"]');
      var until = form.querySelector('[name="until"]');
      if (offset && until && until.value) offset.value = String(new Date(until.value).getTimezoneOffset());
    }
    if (action === "reply") {
      form.querySelector('[name="key"]').value = form.dataset.key || (form.dataset.key = String(Date.now()) + Math.random().toString(36).slice(2));
    }
    var button = form.querySelector('[type="submit"]');
    if (button) button.disabled = true;
    var box = errorBoxFor(form);
    showError(box, "");
    try {
      var response = await post(form.getAttribute("action"), form);
      if (!response.ok) { showError(box, await failure(response)); return; }
      if (action === "export") {
        var blob = await response.blob();
        var link = document.createElement("a");
        link.href = URL.createObjectURL(blob);
        link.download = form.dataset.download || "contact.json";
        document.body.appendChild(link);
        link.click();
        setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
        return;
      }
      var data = await response.json();
      if (action === "erase") { window.location.assign(data.location || "/console"); return; }
      if (action === "reply" || action === "note") {
        form.reset();
        delete form.dataset.key;
        updateLimits();
        stopTyping();
      }
      await refresh();
      if (action === "reply" || action === "note") scrollToEnd();
    } catch (err) {
      showError(box, "The hub did not answer; try again.");
    } finally {
      if (button) button.disabled = false;
    }
  }

  function bindForms(scope) {
    Array.prototype.forEach.call(scope.querySelectorAll("form[data-action]"), function (form) {
      form.addEventListener("submit", function (event) { submitAction(form, event); });
    });
  }
  bindForms(document);

  // Ctrl/Cmd+Enter sends from a text box.
  document.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && event.target.matches && event.target.matches("#reply-text, #note-text")) {
      event.preventDefault();
      event.target.form.requestSubmit();
    }
  });

  // --- reply and note tabs -----------------------------------------------------------
  var tabReply = document.getElementById("tab-reply");
  var tabNote = document.getElementById("tab-note");
  function selectTab(which) {
    if (!tabReply) return;
    var reply = which === "reply";
    tabReply.setAttribute("aria-selected", String(reply));
    tabNote.setAttribute("aria-selected", String(!reply));
    tabReply.tabIndex = reply ? 0 : -1;
    tabNote.tabIndex = reply ? -1 : 0;
    document.getElementById("reply-form").hidden = !reply;
    document.getElementById("note-form").hidden = reply;
    document.getElementById(reply ? "reply-text" : "note-text").focus();
  }
  if (tabReply) {
    tabReply.addEventListener("click", function () { selectTab("reply"); });
    tabNote.addEventListener("click", function () { selectTab("note"); });
    [tabReply, tabNote].forEach(function (tab) {
      tab.addEventListener("keydown", function (event) {
        if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
          event.preventDefault();
          selectTab(tab === tabReply ? "note" : "reply");
          (tab === tabReply ? tabNote : tabReply).focus();
        }
      });
    });
  }

  // --- channel limits: SMS segments (hub.segments' alphabet and sizes), characters left ----
  var replyForm = document.getElementById("reply-form");
  var replyText = document.getElementById("reply-text");
  var limitsOut = document.getElementById("reply-limits");
  var limits = {};
  try { limits = replyForm ? JSON.parse(replyForm.dataset.limits || "{}") : {}; } catch (err) { limits = {}; }

  function smsCost(text, sms) {
    // As hub.segments.segment_count: GSM-7 (extension characters take two
    // septets) or UCS-2 (characters outside the BMP take two units); a
    // two-unit character never straddles segments.
    var basic = new Set(Array.from(sms.gsm7));
    var ext = new Set(Array.from(sms.extension));
    var chars = Array.from(text);
    var gsm7 = chars.every(function (c) { return basic.has(c) || ext.has(c); });
    var costs = chars.map(function (c) {
      if (gsm7) return ext.has(c) ? 2 : 1;
      return c.codePointAt(0) > 0xffff ? 2 : 1;
    });
    var units = costs.reduce(function (a, b) { return a + b; }, 0);
    var single = sms.single[gsm7 ? 0 : 1];
    var concatenated = sms.concatenated[gsm7 ? 0 : 1];
    if (units <= single) {
      return { segments: text ? 1 : 0, left: single - units, encoding: gsm7 ? "GSM-7" : "UCS-2", units: units };
    }
    var segments = 1, used = 0;
    costs.forEach(function (cost) {
      if (used + cost > concatenated) { segments += 1; used = 0; }
      used += cost;
    });
    return { segments: segments, left: concatenated - used, encoding: gsm7 ? "GSM-7" : "UCS-2", units: units };
  }
  window.ServicehubConsole = window.ServicehubConsole || {};
  window.ServicehubConsole.smsCost = smsCost;

  function updateLimits() {
    if (!replyText || !limitsOut) return;
    var text = replyText.value;
    if (limits.sms) {
      var cost = smsCost(text, limits.sms);
      var words = cost.segments + " segment" + (cost.segments === 1 ? "" : "s") + " · " + cost.left + " characters left" + (cost.segments > 1 ? " in this segment" : "") + " · " + cost.encoding;
      if (cost.segments > limits.sms.max_segments) {
        words += " · goes as " + Math.ceil(cost.segments / limits.sms.max_segments) + " texts";
      }
      limitsOut.textContent = words;
      limitsOut.classList.toggle("limits--warn", cost.encoding === "UCS-2" || cost.segments > 1);
    } else if (limits.max_chars) {
      var left = limits.max_chars - text.length;
      limitsOut.textContent = left + " characters left";
      limitsOut.classList.toggle("limits--warn", left < limits.max_chars * 0.1);
    }
  }

  // --- typing indicator to a web chat visitor (throttled here and in the hub) -------------
  var TYPING_EVERY = 2500, TYPING_IDLE = 4000;
  var typingSentAt = 0, typingIdle = null, typingOn = false;
  function typingPost(active) {
    var body = new URLSearchParams({ active: String(active) });
    fetch(base + "/typing", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRF-Token": csrf() },
      body: body,
    }).catch(function () {});
  }
  function stopTyping() {
    clearTimeout(typingIdle);
    if (typingOn) { typingOn = false; typingSentAt = 0; typingPost(false); }
  }
  function onTyping() {
    if (root.dataset.channel !== "webchat") return;
    var now = Date.now();
    if (!replyText.value) { stopTyping(); return; }
    if (now - typingSentAt > TYPING_EVERY) { typingSentAt = now; typingOn = true; typingPost(true); }
    clearTimeout(typingIdle);
    typingIdle = setTimeout(stopTyping, TYPING_IDLE);
  }

  if (replyText) {
    replyText.addEventListener("input", function () { updateLimits(); onTyping(); });
    replyText.addEventListener("blur", stopTyping);
    updateLimits();
  }

  // --- knowledge-base search: insert an article's link into the reply -------------------
  var kbQuery = document.getElementById("kb-query");
  var kbResults = document.getElementById("kb-results");
  var kbForm = document.getElementById("kb-form");
  var kbTimer = null, kbAsked = 0;
  async function kbSearch() {
    var asked = ++kbAsked;
    var q = kbQuery.value.trim();
    if (!q) { kbResults.replaceChildren(); return; }
    var response = await fetch("/console/kb/search?q=" + encodeURIComponent(q), { credentials: "same-origin" });
    if (asked !== kbAsked || !response.ok) return; // an answer to an older query
    kbResults.replaceChildren(fragment(await response.text()));
  }
  if (kbQuery) {
    kbQuery.addEventListener("input", function () { clearTimeout(kbTimer); kbTimer = setTimeout(kbSearch, 250); });
    kbForm.addEventListener("submit", function (event) { event.preventDefault(); clearTimeout(kbTimer); kbSearch(); });
    kbResults.addEventListener("click", function (event) {
      var button = event.target.closest(".kb-insert");
      if (!button || !replyText) return;
      selectTab("reply");
      insertIntoReply(button.dataset.title + ": " + button.dataset.url);
    });
  }

  // Text put where the cursor is in the reply box, with the spaces it needs around it.
  function insertIntoReply(insert) {
    var start = replyText.selectionStart, end = replyText.selectionEnd, value = replyText.value;
    var before = value.slice(0, start), after = value.slice(end);
    if (before && !/\s$/.test(before)) insert = " " + insert;
    if (after && !/^\s/.test(after)) insert += " ";
    replyText.value = before + insert + after;
    replyText.selectionStart = replyText.selectionEnd = (before + insert).length;
    replyText.focus();
    updateLimits();
  }

  // --- canned replies: rendered for this conversation and agent, then inserted ---------------
  var cannedList = document.getElementById("canned-list");
  if (cannedList && replyText) {
    cannedList.addEventListener("click", async function (event) {
      var button = event.target.closest(".canned-insert");
      if (!button) return;
      selectTab("reply");
      var response = await fetch(location.pathname.replace(/\/$/, "") + "/canned/" + encodeURIComponent(button.dataset.name), { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) { showError("composer-error", "That canned reply could not be rendered for this conversation."); return; }
      insertIntoReply((await response.json()).text);
    });
  }

  // --- keyboard shortcuts (console.js runs them outside text fields and lists them on "?") ----
  function click(id) {
    return function () { var button = document.getElementById(id); if (button) button.click(); };
  }
  if (canWrite) {
    registerShortcut("r", "Reply to the customer", function () { selectTab("reply"); });
    registerShortcut("n", "Write an internal note", function () { selectTab("note"); });
    registerShortcut("c", "Claim the conversation", click("claim"));
    registerShortcut("e", "Resolve the conversation", click("resolve"));
  }
  registerShortcut("Escape", "Back to the inbox", function () { window.location.assign("/console"); });
  // Esc in a text box leaves the box first (a second Esc goes back to the inbox).
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && event.target.matches && event.target.matches("textarea, input")) event.target.blur();
  });

  scrollToEnd();
  recheckSoon();
  root.dataset.ready = "true"; // behaviour attached (tests wait for it)
})();
