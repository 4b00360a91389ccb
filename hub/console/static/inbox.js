// The inbox's script layer (an ES module; the page works without it).
//
// - Keyboard: j / k move between conversations, Enter opens the selected
//   one, / focuses the search box (registered with console.js, so "?" lists them).
// - "Load more" fetches the next page's rows (/console/inbox/page) and appends them.
// - Live: an EventSource on /console/events says which conversations changed;
//   their rows are re-read through /console/inbox/rows under this view's
//   filters and replaced, inserted in order (new conversations at the top)
//   or removed (one that left the view). A "resync" re-reads the first page.

import { registerShortcut } from "./console.js";

const root = document.getElementById("inbox");
const list = document.getElementById("inbox-list");
const statusLine = document.getElementById("inbox-status-line");
const empty = document.getElementById("inbox-empty");
const filters = root ? root.dataset.filters || "" : "";

function rows() {
  return [...list.querySelectorAll(".inbox-row")];
}

function links() {
  return rows().map((row) => row.querySelector(".inbox-link"));
}

function selectedIndex() {
  const all = links();
  const focused = all.indexOf(document.activeElement);
  if (focused >= 0) return focused;
  return rows().findIndex((row) => row.classList.contains("is-selected"));
}

function select(index) {
  const all = rows();
  if (!all.length) return;
  const target = all[Math.max(0, Math.min(all.length - 1, index))];
  for (const row of all) row.classList.toggle("is-selected", row === target);
  const link = target.querySelector(".inbox-link");
  link.focus({ preventScroll: true });
  target.scrollIntoView({ block: "nearest" });
}

function announce(text) {
  if (statusLine) statusLine.textContent = text;
}

function parse(html) {
  const template = document.createElement("template");
  template.innerHTML = html;
  return [...template.content.querySelectorAll(".inbox-row")];
}

// Rows are ordered by (activity, id), newest first.
function newer(a, b) {
  const at = Date.parse(a.dataset.activity);
  const bt = Date.parse(b.dataset.activity);
  if (at !== bt) return at > bt;
  return Number(a.dataset.conversationId) > Number(b.dataset.conversationId);
}

function morePages() {
  return document.getElementById("inbox-more-link") !== null;
}

function place(row) {
  const existing = document.getElementById(row.id);
  const wasSelected = existing && existing.classList.contains("is-selected");
  const hadFocus = existing && existing.contains(document.activeElement);
  if (existing) existing.remove();
  const after = rows().find((other) => newer(row, other));
  if (after) {
    list.insertBefore(row, after);
  } else if (!morePages()) {
    list.append(row); // older than everything shown, and there is nothing further
  } else {
    return false; // it belongs to a page not loaded yet
  }
  if (wasSelected) row.classList.add("is-selected");
  if (hadFocus) row.querySelector(".inbox-link").focus({ preventScroll: true });
  return true;
}

function refreshEmpty() {
  if (empty) empty.hidden = rows().length > 0;
}

async function fetchRows(path) {
  const response = await fetch(path, { headers: { Accept: "text/html-fragment" }, credentials: "same-origin" });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return { html: await response.text(), next: response.headers.get("X-Next-Cursor") };
}

// --- keyboard --------------------------------------------------------------------------
registerShortcut("j", "Next conversation", () => select(selectedIndex() + 1));
registerShortcut("k", "Previous conversation", () => select(selectedIndex() < 0 ? 0 : selectedIndex() - 1));
registerShortcut("Enter", "Open the selected conversation", () => {
  const active = document.activeElement;
  if (active instanceof HTMLElement && active.matches("a, button, summary, [role='button']")) {
    active.click(); // Enter keeps its own meaning on links and buttons
    return;
  }
  const index = selectedIndex();
  if (index >= 0) links()[index].click();
});
registerShortcut("/", "Search messages", () => {
  const search = document.getElementById("inbox-q");
  if (search) {
    search.focus();
    search.select();
  }
});

list.addEventListener("focusin", (event) => {
  const row = event.target.closest(".inbox-row");
  if (!row) return;
  for (const other of rows()) other.classList.toggle("is-selected", other === row);
});

// --- load more ---------------------------------------------------------------------------
document.addEventListener("click", async (event) => {
  const link = event.target instanceof Element ? event.target.closest("#inbox-more-link") : null;
  if (!link) return;
  event.preventDefault();
  link.setAttribute("aria-busy", "true");
  try {
    const { html, next } = await fetchRows(`/console/inbox/page?${filters}&cursor=${encodeURIComponent(link.dataset.cursor)}`);
    const added = parse(html).filter((row) => !document.getElementById(row.id));
    list.append(...added);
    announce(`${added.length} more conversations`);
    if (next) {
      link.dataset.cursor = next;
      link.href = `/console?${filters}&cursor=${encodeURIComponent(next)}`;
      link.removeAttribute("aria-busy");
    } else {
      document.getElementById("inbox-more").remove();
    }
    if (added.length) added[0].querySelector(".inbox-link").focus();
  } catch (error) {
    link.removeAttribute("aria-busy");
    window.location.href = link.href; // the page itself can still do it
  }
});

// --- live ---------------------------------------------------------------------------------
const pending = new Set();
const pendingContacts = new Set();
let flushTimer = null;

function schedule() {
  if (flushTimer === null) flushTimer = setTimeout(flush, 30);
}

async function flush() {
  flushTimer = null;
  for (const contact of pendingContacts) {
    for (const row of list.querySelectorAll(`.inbox-row[data-contact-id="${CSS.escape(contact)}"]`)) {
      pending.add(row.dataset.conversationId);
    }
  }
  pendingContacts.clear();
  const ids = [...pending].slice(0, 100);
  for (const id of ids) pending.delete(id);
  if (!ids.length) return;
  let fresh;
  try {
    fresh = parse((await fetchRows(`/console/inbox/rows?${filters}&ids=${ids.join(",")}`)).html);
  } catch (error) {
    for (const id of ids) pending.add(id);
    setTimeout(schedule, 2000);
    return;
  }
  const returned = new Set(fresh.map((row) => row.dataset.conversationId));
  let added = 0;
  for (const row of fresh) {
    const known = document.getElementById(row.id) !== null;
    if (place(row) && !known) {
      added += 1;
      row.classList.add("is-new");
      setTimeout(() => row.classList.remove("is-new"), 4000);
    }
  }
  for (const id of ids) {
    if (!returned.has(id)) document.getElementById(`conversation-${id}`)?.remove();
  }
  refreshEmpty();
  if (added) announce(added === 1 ? "1 new conversation" : `${added} new conversations`);
  if (pending.size) schedule();
}

async function resync() {
  try {
    const { html, next } = await fetchRows(`/console/inbox/page?${filters}`);
    list.replaceChildren(...parse(html));
    const more = document.getElementById("inbox-more-link");
    if (more && next) more.dataset.cursor = next;
    refreshEmpty();
  } catch (error) {
    // the next event or resync tries again
  }
}

if (root && "EventSource" in window) {
  const source = new EventSource(root.dataset.events);
  source.addEventListener("change", (event) => {
    let change;
    try {
      change = JSON.parse(event.data);
    } catch {
      return;
    }
    if (change.conversation_id) pending.add(String(change.conversation_id));
    if (change.what === "contact" && change.contact_id) pendingContacts.add(String(change.contact_id));
    schedule();
  });
  source.addEventListener("resync", resync);
  source.addEventListener("hello", () => root.setAttribute("data-live", "on"));
  source.addEventListener("error", () => root.setAttribute("data-live", "off"));
  window.addEventListener("pagehide", () => source.close());
}
