// steer annotate: the page script. Every action has a key (listed on the page); answers go to /api/<kind>
// as JSON with the request id the server put in the page, so a double submit writes one row.
"use strict";

(() => {
  const dataNode = document.getElementById("item-data");
  const data = dataNode ? JSON.parse(dataNode.textContent) : null;
  const started = performance.now();
  let busy = false;

  function flash(text, bad) {
    const box = document.getElementById("flash");
    box.textContent = text;
    box.className = bad ? "bad shown" : "shown";
  }

  function typing(target) {
    return target instanceof HTMLTextAreaElement || target instanceof HTMLInputElement;
  }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify(body),
    });
    let payload = {};
    try {
      payload = await response.json();
    } catch (error) {
      payload = { error: `the server answered ${response.status} without a message` };
    }
    if (!response.ok) throw new Error(payload.error || `the server answered ${response.status}`);
    return payload;
  }

  // Run one request at a time; a second key press while the first is in flight does nothing.
  async function once(work) {
    if (busy) return;
    busy = true;
    try {
      await work();
    } catch (error) {
      flash(error.message, true);
      busy = false;
    }
  }

  function go(url, message) {
    if (message) sessionStorage.setItem("steer-flash", message);
    window.location.assign(url);
  }

  function submit(answer) {
    if (!data || !data.item_id) return;
    once(async () => {
      const seconds = (performance.now() - started) / 1000;
      const body = Object.assign({ item_id: data.item_id, request_id: data.request_id, seconds }, answer);
      await post(`/api/${data.kind}`, body);
      go(`/${data.kind}`, "Saved. Press u to undo.");
    });
  }

  function skip() {
    if (!data || !data.item_id) return;
    once(async () => {
      await post("/api/skip", { kind: data.kind, item_id: data.item_id });
      go(`/${data.kind}`, "Skipped.");
    });
  }

  function undo() {
    once(async () => {
      const result = await post("/api/undo", {});
      if (!result.undone) {
        flash("Nothing to undo.", false);
        busy = false;
        return;
      }
      const where = result.undone.item_id ? `/${result.undone.kind}/${result.undone.item_id}` : `/${result.undone.kind}`;
      go(where, "Undone: answer this item again.");
    });
  }

  // Compare: A (left) / B (right) / tie / both bad, with an optional reason.
  function compare() {
    const reason = document.getElementById("reason");
    const choose = (choice) => submit({ choice, reason: reason.value });
    for (const button of document.querySelectorAll("[data-choice]")) {
      button.addEventListener("click", () => choose(button.dataset.choice));
    }
    const keys = {
      1: "left", a: "left", ArrowLeft: "left",
      2: "right", b: "right", ArrowRight: "right",
      3: "tie", t: "tie",
      4: "both_bad", x: "both_bad",
    };
    return (event) => {
      if (keys[event.key]) choose(keys[event.key]);
      else if (event.key === "r") reason.focus();
      else return false;
      return true;
    };
  }

  // Rank: drag an answer, or select one with ↑ ↓ (k j) and move it with Shift+↑ Shift+↓ (K J).
  function rank() {
    const list = document.getElementById("ranking");
    const items = () => [...list.children];
    let selected = 0;
    let dragged = null;
    const show = () => items().forEach((item, index) => item.classList.toggle("selected", index === selected));
    const move = (step) => {
      const all = items();
      const target = selected + step;
      if (target < 0 || target >= all.length) return;
      if (step < 0) list.insertBefore(all[selected], all[target]);
      else list.insertBefore(all[target], all[selected]);
      selected = target;
      show();
    };
    list.addEventListener("dragstart", (event) => {
      dragged = event.target.closest("li");
      event.dataTransfer.effectAllowed = "move";
      event.dataTransfer.setData("text/plain", dragged.dataset.response);
    });
    list.addEventListener("dragover", (event) => {
      event.preventDefault();
      const over = event.target.closest("li");
      if (!dragged || !over || over === dragged) return;
      const box = over.getBoundingClientRect();
      const after = event.clientY > box.top + box.height / 2;
      list.insertBefore(dragged, after ? over.nextSibling : over);
    });
    list.addEventListener("drop", (event) => {
      event.preventDefault();
      if (dragged) selected = items().indexOf(dragged);
      dragged = null;
      show();
    });
    list.addEventListener("click", (event) => {
      const item = event.target.closest("li");
      if (item) selected = items().indexOf(item);
      show();
    });
    const save = () => submit({ order: items().map((item) => Number(item.dataset.response)) });
    document.getElementById("submit-ranking").addEventListener("click", save);
    show();
    return (event) => {
      const key = event.key;
      if (key === "ArrowUp" && event.shiftKey) move(-1);
      else if (key === "ArrowDown" && event.shiftKey) move(1);
      else if (key === "K") move(-1);
      else if (key === "J") move(1);
      else if (key === "ArrowUp" || key === "k") (selected = Math.max(0, selected - 1)), show();
      else if (key === "ArrowDown" || key === "j") (selected = Math.min(items().length - 1, selected + 1)), show();
      else if (key === "Enter") save();
      else return false;
      return true;
    };
  }

  // Rate: 1–7 on the item's rubric, saved at once (a slip is one undo away).
  function rate() {
    const choose = (value) => {
      for (const button of document.querySelectorAll(".score")) {
        button.setAttribute("aria-pressed", String(Number(button.dataset.value) === value));
      }
      submit({ value });
    };
    for (const button of document.querySelectorAll(".score")) {
      button.addEventListener("click", () => choose(Number(button.dataset.value)));
    }
    return (event) => {
      if (!/^[1-7]$/.test(event.key)) return false;
      choose(Number(event.key));
      return true;
    };
  }

  // Critique: what is wrong, and a better answer (SFT data); Ctrl+Enter saves from anywhere.
  function critique() {
    const wrong = document.getElementById("critique");
    const better = document.getElementById("revision");
    const save = () => {
      if (!wrong.value.trim()) flash("Write what is wrong first (c).", true);
      else submit({ critique: wrong.value, revision: better.value });
    };
    document.getElementById("submit-critique").addEventListener("click", save);
    return (event) => {
      if (event.key === "c") wrong.focus();
      else if (event.key === "w") better.focus();
      else if (event.key === "Enter" && event.ctrlKey) save();
      else return false;
      return true;
    };
  }

  function start() {
    const saved = sessionStorage.getItem("steer-flash");
    if (saved) {
      sessionStorage.removeItem("steer-flash");
      flash(saved, false);
    }
    for (const button of document.querySelectorAll("[data-action=skip]")) button.addEventListener("click", skip);
    for (const button of document.querySelectorAll("[data-action=undo]")) button.addEventListener("click", undo);
    const pages = { compare, rank, rate, critique };
    const page = data && data.item_id && pages[data.kind] ? pages[data.kind]() : () => false;
    document.addEventListener("keydown", (event) => {
      if (event.altKey || event.metaKey) return;
      if (typing(event.target)) {
        // In a text box only Esc (leave it) and Ctrl+Enter (save or leave) are keys; the rest is text.
        if (event.key === "Escape") event.target.blur();
        else if (event.key === "Enter" && event.ctrlKey) {
          if (data && data.kind === "critique") page(event);
          else event.target.blur();
        } else return;
        event.preventDefault();
        return;
      }
      if (event.ctrlKey) return;
      let handled = page(event);
      if (!handled && event.key === "s") (skip(), (handled = true));
      else if (!handled && event.key === "u") (undo(), (handled = true));
      if (handled) event.preventDefault();
    });
  }

  start();
})();
