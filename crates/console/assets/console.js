// Headway console: progressive enhancement only. Pages work without this
// script; with it, node state updates live (server-sent events) and the
// policy editor checks as you type and marks the line of an error.
"use strict";

(function () {
  const csrf = () => {
    const m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.content : "";
  };

  // --- live updates -------------------------------------------------------
  function setBadge(badge, online) {
    badge.textContent = online ? "online" : "offline";
    badge.classList.toggle("online", online);
    badge.classList.toggle("offline", !online);
  }

  // The online state each node's latest event gave, and when (in event
  // order). A page re-read is rendered at some moment; events that arrive
  // while it travels are newer than what it shows, and are applied again
  // to what it brings.
  const lastOnline = new Map();
  let eventCount = 0;
  function showOnline(node, online) {
    document.querySelectorAll('[data-online-of="' + CSS.escape(node) + '"]').forEach((b) => setBadge(b, online));
  }

  let refreshTimer = null;
  let refreshCount = 0;
  function busy() {
    const a = document.activeElement;
    return a && a.closest && a.closest("main") && a.matches("input, textarea, select");
  }
  // Re-reads the page and swaps its content, keeping the messages shown
  // (a secret shown once must not vanish under the reader's eyes).
  async function refresh() {
    if (busy() || document.getElementById("policy")) return;
    const mine = ++refreshCount;
    const eventsBefore = eventCount;
    const r = await fetch(location.href, { headers: { Accept: "text/html" }, credentials: "same-origin" });
    if (!r.ok || r.redirected) return;
    const text = await r.text();
    // A later re-read is on its way: this one is older.
    if (mine !== refreshCount) return;
    const doc = new DOMParser().parseFromString(text, "text/html");
    const fresh = doc.getElementById("main");
    const main = document.getElementById("main");
    if (!fresh || !main) return;
    const kept = Array.from(main.querySelectorAll(":scope > .flash"));
    const openDetails = Array.from(main.querySelectorAll("details[open]")).map((d) => d.id).filter(Boolean);
    main.replaceChildren(...Array.from(fresh.childNodes));
    const h1 = main.querySelector("h1");
    kept.reverse().forEach((f) => (h1 ? h1.after(f) : main.prepend(f)));
    openDetails.forEach((id) => { const d = document.getElementById(id); if (d) d.open = true; });
    lastOnline.forEach((seen, node) => { if (seen.at > eventsBefore) showOnline(node, seen.online); });
  }
  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refresh, 200);
  }

  function live() {
    const url = document.body.dataset.live;
    const state = document.getElementById("live-state");
    if (!url || !window.EventSource) {
      if (state) state.textContent = "";
      return;
    }
    const es = new EventSource(url);
    es.onopen = () => { if (state) { state.textContent = "live"; state.className = "live on"; } };
    es.onerror = () => { if (state) { state.textContent = "reconnecting…"; state.className = "live off"; } };
    es.addEventListener("node_online", (e) => {
      const ev = JSON.parse(e.data);
      const node = String(ev.node);
      lastOnline.set(node, { online: !!ev.online, at: ++eventCount });
      showOnline(node, !!ev.online);
      const shown = document.querySelector('[data-online-of="' + CSS.escape(node) + '"]');
      if (!shown || document.querySelector(".cards")) refreshSoon();
    });
    ["node_added", "node_removed", "node_updated", "user_changed", "user_removed", "resync"].forEach((kind) =>
      es.addEventListener(kind, refreshSoon));
    window.addEventListener("pagehide", () => es.close());
  }

  // --- policy editor --------------------------------------------------------
  function editor() {
    const ta = document.getElementById("policy");
    if (!ta) return;
    const gutter = document.createElement("div");
    gutter.className = "gutter";
    gutter.setAttribute("aria-hidden", "true");
    ta.before(gutter);
    let badLine = Number(ta.dataset.errorLine || 0);
    function draw() {
      const n = ta.value.split("\n").length;
      const frag = document.createDocumentFragment();
      for (let i = 1; i <= n; i++) {
        const s = document.createElement("span");
        s.textContent = String(i);
        if (i === badLine) s.className = "bad";
        frag.appendChild(s);
      }
      gutter.replaceChildren(frag);
      gutter.scrollTop = ta.scrollTop;
    }
    ta.addEventListener("scroll", () => { gutter.scrollTop = ta.scrollTop; });
    draw();

    const verdict = document.getElementById("policy-verdict");
    const diffView = document.getElementById("policy-diff-view");
    const diffBox = document.getElementById("diff-box");
    let seq = 0;
    async function check() {
      const mine = ++seq;
      const body = new URLSearchParams({ policy: ta.value, _csrf: csrf() });
      const r = await fetch("/admin/policy/check", {
        method: "POST",
        headers: { Accept: "application/json", "X-CSRF-Token": csrf() },
        body,
        credentials: "same-origin",
      });
      if (mine !== seq || !r.ok) return;
      const a = await r.json();
      badLine = a.line || 0;
      draw();
      const box = document.createElement("div");
      if (a.ok) {
        box.className = "flash ok";
        box.setAttribute("role", "status");
        box.textContent = "The policy is valid and its tests pass.";
      } else {
        box.className = "flash err";
        box.setAttribute("role", "alert");
        const p = document.createElement("p");
        p.textContent = "Refused: " + a.detail;
        box.appendChild(p);
        if (a.line) {
          const at = document.createElement("p");
          at.className = "error-at";
          at.dataset.line = String(a.line);
          at.dataset.column = String(a.column || 1);
          at.textContent = "Line " + a.line + ", column " + (a.column || 1) + ": ";
          const code = document.createElement("code");
          code.textContent = ta.value.split("\n")[a.line - 1] || "";
          at.appendChild(code);
          box.appendChild(at);
        }
      }
      verdict.replaceChildren(box);
      if (diffView) diffView.innerHTML = a.diff_html; // rendered (escaped) by the server
      if (diffBox) diffBox.open = true;
    }
    let timer = null;
    ta.addEventListener("input", () => {
      draw();
      clearTimeout(timer);
      timer = setTimeout(check, 700);
    });
    const checkButton = document.querySelector('#policy-form button[formaction="/admin/policy/check"]');
    if (checkButton) checkButton.addEventListener("click", (e) => { e.preventDefault(); check(); });
    // Clicking the error moves the cursor to its line.
    verdict.addEventListener("click", (e) => {
      const at = e.target.closest(".error-at");
      if (!at) return;
      const lines = ta.value.split("\n");
      const line = Number(at.dataset.line);
      let pos = 0;
      for (let i = 0; i < line - 1 && i < lines.length; i++) pos += lines[i].length + 1;
      ta.focus();
      ta.setSelectionRange(pos + Number(at.dataset.column || 1) - 1, pos + Number(at.dataset.column || 1) - 1);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    live();
    editor();
  });
})();
