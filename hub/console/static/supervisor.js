// The supervisor's board: live refresh, reassign by drag and drop or by keyboard.
//
// - The board is re-read as a server-rendered fragment (?fragment=board) when
//   the live stream (/console/events) says a ticket or a conversation changed,
//   and every 30 s (SLA clocks move on their own).
// - An assign form posts with fetch (the CSRF header comes from console.js)
//   and refreshes the board; without this script the form posts as is.
// - Drag a ticket onto an agent to assign it there.
// - Keyboard: j / k move between tickets, a focuses the ticket's assign list.
import { registerShortcut } from "./console.js";

const board = document.getElementById("board");
const REFRESH_MS = 30000;
let refreshing = null;
let again = false;

// Someone choosing from an assign list or about to press its button must not
// have it swapped under them: a refresh waits until focus leaves the control
// (assign() forces one, after its own change). This is looked at twice: when a
// refresh is asked for, and again when its fragment arrives (the list may have
// been opened while it loaded).
function choosing() {
  const active = document.activeElement;
  return Boolean(active && board.contains(active) && active.matches("select, button, input"));
}

// A choice made in a list and not sent yet: even a forced refresh would reset it.
function unsent() {
  const active = document.activeElement;
  if (!active || !board.contains(active) || !active.matches("select")) return false;
  const byDefault = Math.max(0, [...active.options].findIndex((option) => option.defaultSelected));
  return active.selectedIndex !== byDefault;
}

let deferred = false;

function later() {
  if (deferred) return;
  deferred = true;
  board.addEventListener(
    "focusout",
    () => {
      deferred = false;
      // Focus moves on after focusout: look again once it has landed.
      setTimeout(() => refresh(), 0);
    },
    { once: true },
  );
}

async function refresh({ force = false } = {}) {
  if (!board) return;
  if (!force && choosing()) {
    later();
    return;
  }
  if (refreshing) {
    again = true;
    return refreshing;
  }
  board.setAttribute("aria-busy", "true");
  refreshing = (async () => {
    try {
      const response = await fetch(board.dataset.fragmentUrl, { headers: { Accept: "text/html" } });
      if (!response.ok) return;
      const html = await response.text();
      if ((!force && choosing()) || unsent()) {
        later();
        return;
      }
      const template = document.createElement("template");
      template.innerHTML = html;
      // Keep the keyboard where it is at the swap (not where it was when the
      // fetch began: j or a may have moved it while the fragment was loading).
      const focusedId = board.contains(document.activeElement) ? document.activeElement.id : "";
      const focusedTicket = document.activeElement?.closest?.("[data-ticket-id]")?.dataset.ticketId;
      board.replaceChildren(template.content);
      const again = focusedId ? document.getElementById(focusedId) : null;
      if (again) again.focus();
      else if (focusedTicket) board.querySelector(`[data-ticket-id="${CSS.escape(focusedTicket)}"]`)?.focus();
    } finally {
      board.setAttribute("aria-busy", "false");
      refreshing = null;
      if (again) {
        again = false;
        refresh({ force: true });
      }
    }
  })();
  return refreshing;
}

async function assign(ticketId, assignee) {
  const body = new URLSearchParams({ assignee: assignee ?? "" });
  const response = await fetch(`/console/supervisor/tickets/${encodeURIComponent(ticketId)}/assign`, {
    method: "POST",
    headers: { Accept: "application/json", "Content-Type": "application/x-www-form-urlencoded" },
    body,
  });
  if (!response.ok) {
    let message = `Could not assign ticket #${ticketId}`;
    try {
      const detail = await response.json();
      if (detail && detail.error) message += `: ${detail.error.message || detail.error}`;
    } catch {
      /* not JSON */
    }
    announce(message);
  }
  await refresh({ force: true });
}

function announce(text) {
  let region = document.getElementById("supervisor-status");
  if (!region) {
    region = document.createElement("p");
    region.id = "supervisor-status";
    region.className = "alert alert-error";
    region.setAttribute("role", "alert");
    board.before(region);
  }
  region.textContent = text;
}

if (board) {
  board.addEventListener("submit", (event) => {
    const form = event.target.closest(".assign-form");
    if (!form) return;
    event.preventDefault();
    const ticket = form.closest("[data-ticket-id]");
    assign(ticket.dataset.ticketId, new FormData(form).get("assignee"));
  });

  board.addEventListener("dragstart", (event) => {
    const ticket = event.target.closest?.("[data-ticket-id]");
    if (!ticket) return;
    event.dataTransfer.setData("text/x-ticket-id", ticket.dataset.ticketId);
    event.dataTransfer.effectAllowed = "move";
    ticket.classList.add("dragging");
  });
  board.addEventListener("dragend", (event) => event.target.closest?.("[data-ticket-id]")?.classList.remove("dragging"));
  board.addEventListener("dragover", (event) => {
    const agent = event.target.closest?.("[data-drop-target]");
    if (!agent || !event.dataTransfer.types.includes("text/x-ticket-id")) return;
    event.preventDefault();
    agent.classList.add("drop-over");
  });
  board.addEventListener("dragleave", (event) => event.target.closest?.("[data-drop-target]")?.classList.remove("drop-over"));
  board.addEventListener("drop", (event) => {
    const agent = event.target.closest?.("[data-drop-target]");
    const ticketId = event.dataTransfer.getData("text/x-ticket-id");
    if (!agent || !ticketId) return;
    event.preventDefault();
    agent.classList.remove("drop-over");
    assign(ticketId, agent.dataset.agentId);
  });

  const tickets = () => [...board.querySelectorAll("[data-ticket-id]")];
  const move = (step) => {
    const all = tickets();
    if (!all.length) return;
    const at = all.indexOf(document.activeElement?.closest?.("[data-ticket-id]"));
    all[Math.max(0, Math.min(all.length - 1, at < 0 ? 0 : at + step))].focus();
  };
  registerShortcut("j", "Next ticket", () => move(1));
  registerShortcut("k", "Previous ticket", () => move(-1));
  registerShortcut("a", "Assign the selected ticket", () => {
    const ticket = document.activeElement?.closest?.("[data-ticket-id]") || tickets()[0];
    ticket?.querySelector("[data-assign-select]")?.focus();
  });

  if ("EventSource" in window) {
    const stream = new EventSource("/console/events");
    let pending = null;
    const soon = () => {
      clearTimeout(pending);
      pending = setTimeout(refresh, 150);
    };
    stream.addEventListener("change", (event) => {
      try {
        const change = JSON.parse(event.data);
        if (["ticket", "conversation", "sla", "contact"].includes(change.what)) soon();
      } catch {
        /* ignore a malformed event */
      }
    });
    stream.addEventListener("resync", soon);
  }
  setInterval(refresh, REFRESH_MS);
}
