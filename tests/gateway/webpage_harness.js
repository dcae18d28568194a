// Runs the clinician page's script (gateway/web/index.html) under Node against a live server,
// with a minimal DOM stand-in. Protocol on stdout, one line each:
//   LIVE <json>   the live stream is up and the lists are loaded (json: patients shown)
//   ALERT <json>  an alert row appeared (json: the row's cell texts)
//   ACKED         after clicking its Acknowledge button, no open alert is left
// Usage: node webpage_harness.js <page.html> <base-url> <token>
"use strict";
const fs = require("fs");
const [, , pagePath, base, token] = process.argv;

class El {
  constructor(tag) {
    this.tagName = tag; this.children = []; this.textContent = ""; this.className = "";
    this.listeners = {}; this.disabled = false; this.value = ""; this.type = "";
    this.classList = { add: (c) => { this.className += " " + c; } };
  }
  append(...cs) { this.children.push(...cs); }
  replaceChildren(...cs) { this.children = [...cs]; }
  addEventListener(type, f) { (this.listeners[type] ||= []).push(f); }
  click() { (this.listeners.click || []).forEach((f) => f()); }
  texts() { return [this.textContent, ...this.children.flatMap((c) => c.texts())].filter(Boolean); }
  find(pred) {
    if (pred(this)) return this;
    for (const c of this.children) { const f = c.find(pred); if (f) return f; }
    return null;
  }
}
const byId = new Map();
globalThis.document = {
  getElementById: (id) => { if (!byId.has(id)) byId.set(id, new El("#" + id)); return byId.get(id); },
  createElement: (tag) => new El(tag),
};
const store = new Map([["telehub.token", token]]);
globalThis.sessionStorage = {
  getItem: (k) => (store.has(k) ? store.get(k) : null),
  setItem: (k, v) => store.set(k, String(v)),
  removeItem: (k) => store.delete(k),
};
const realFetch = globalThis.fetch;
globalThis.fetch = (url, opts) => realFetch(base + url, opts);

const html = fs.readFileSync(pagePath, "utf8");
const script = html.match(/<script>([\s\S]*?)<\/script>/)[1];
(0, eval)(script);

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(pred, what) {
  for (let i = 0; i < 500; i++) { if (pred()) return; await sleep(20); }
  console.log("TIMEOUT " + what + " " + JSON.stringify({ conn: $("conn").textContent, msg: $("msg").textContent }));
  process.exit(2);
}

(async () => {
  await until(() => $("conn").textContent === "live" && $("patients").children.length > 0, "live");
  console.log("LIVE " + JSON.stringify($("patients").children.map((tr) => tr.texts())));
  await until(() => $("alerts").find((e) => e.tagName === "button"), "alert row");
  const row = $("alerts").children[0];
  console.log("ALERT " + JSON.stringify(row.children.slice(0, 5).map((td) => td.texts().join(" "))));
  row.find((e) => e.tagName === "button").click();
  await until(() => $("alerts").texts().includes("No open alerts."), "ack");
  console.log("ACKED");
  process.exit(0);
})();
