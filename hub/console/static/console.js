// The console's shared script layer (an ES module, loaded by base.html).
//
// - Every same-origin state-changing request sends the page's CSRF token
//   (<meta name="csrf-token">) as X-CSRF-Token: window.fetch is wrapped and
//   htmx's requests get the header through its htmx:configRequest event.
// - "?" opens a dialog listing the keyboard shortcuts pages registered:
//     import { registerShortcut } from "/console/static/console.js?v=...";
//     registerShortcut("j", "Next conversation", () => ...);
//   The registry lives on globalThis, so a page importing this module under
//   another URL (without ?v=, relatively) still shares it.

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);
const state = (globalThis.__servicehubConsole ??= { shortcuts: new Map(), installed: false });

export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.getAttribute("content") || "" : "";
}

function sameOrigin(url) {
  try {
    return new URL(url, window.location.href).origin === window.location.origin;
  } catch {
    return false;
  }
}

// Shortcuts: key -> {description, handler}. Keys are KeyboardEvent.key values ("j", "/", "Escape").
export function registerShortcut(key, description, handler) {
  state.shortcuts.set(key, { description, handler });
  return () => state.shortcuts.delete(key);
}

export function shortcuts() {
  return [...state.shortcuts.entries()].map(([key, { description }]) => ({ key, description }));
}

function typing(target) {
  if (!(target instanceof Element)) return false;
  return target.closest("input, textarea, select, [contenteditable=''], [contenteditable='true']") !== null;
}

function openHelp() {
  const dialog = document.getElementById("shortcuts-dialog");
  const list = document.getElementById("shortcuts-list");
  if (!dialog || !list) return;
  list.replaceChildren();
  for (const { key, description } of shortcuts()) {
    const term = document.createElement("dt");
    const kbd = document.createElement("kbd");
    kbd.textContent = key;
    term.append(kbd);
    const detail = document.createElement("dd");
    detail.textContent = description;
    list.append(term, detail);
  }
  if (!dialog.open) dialog.showModal();
}

function install() {
  if (state.installed) return;
  state.installed = true;

  const nativeFetch = window.fetch.bind(window);
  window.fetch = (input, init = {}) => {
    const request = input instanceof Request ? input : null;
    const url = request ? request.url : String(input);
    const method = (init.method || (request && request.method) || "GET").toUpperCase();
    if (UNSAFE.has(method) && sameOrigin(url)) {
      const headers = new Headers(init.headers || (request ? request.headers : undefined));
      if (!headers.has("X-CSRF-Token")) headers.set("X-CSRF-Token", csrfToken());
      init = { ...init, headers };
    }
    return nativeFetch(input, init);
  };

  document.addEventListener("htmx:configRequest", (event) => {
    const detail = event.detail;
    if (detail && UNSAFE.has(String(detail.verb || "").toUpperCase())) {
      detail.headers["X-CSRF-Token"] = csrfToken();
    }
  });

  registerShortcut("?", "Show this list of shortcuts", openHelp);

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (typing(event.target)) return;
    const dialog = document.getElementById("shortcuts-dialog");
    if (dialog && dialog.open && event.key !== "?") return;
    const shortcut = state.shortcuts.get(event.key);
    if (!shortcut) return;
    event.preventDefault();
    shortcut.handler(event);
  });
}

install();
