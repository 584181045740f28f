#!/usr/bin/env node
// Takes the README's screenshots: runs examples/chat-web (a temp copy, so its history starts empty)
// under `nitric-like run`, chats from two tabs of its page, then shows the dashboard with those
// connections, its own client (Try a socket), their messages and the kv store. Writes
// docs/chat-web.png and docs/dashboard.png.
// Needs Debian's chromium (apt-get install chromium) and a build (pnpm build). Usage:
//   node scripts/screenshots.mjs
import { spawn } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import WebSocket from "ws";

const root = new URL("..", import.meta.url).pathname;
const example = join(root, "examples", "chat-web");
const docs = join(root, "docs");
const dir = mkdtempSync(join(tmpdir(), "nitric-like-screenshots-"));
cpSync(example, dir, { recursive: true, filter: (p) => !p.includes("node_modules") && !p.includes(".nitric-like") });
symlinkSync(join(example, "node_modules"), join(dir, "node_modules"), "dir");

const cli = spawn(
  process.execPath,
  [join(root, "packages", "cli", "bin", "nitric-like.js"), "run", dir, "--random-ports", "--plain"],
  { env: { ...process.env, NO_COLOR: "1", CHAT_WEB_PORT: "0" }, stdio: ["ignore", "pipe", "pipe"] },
);
let output = "";
cli.stdout.on("data", (d) => {
  output += d;
});
cli.stderr.on("data", (d) => {
  output += d;
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function find(pattern) {
  for (let i = 0; i < 300; i++) {
    const m = pattern.exec(output);
    if (m) return m[1];
    if (cli.exitCode !== null) break;
    await sleep(50);
  }
  throw new Error(`no ${pattern} in the output of nitric-like run:\n${output}`);
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const page = await find(/chat page (http:\/\/\S+)/);
  const dashboard = await find(/^dashboard (http:\/\/\S+)$/m);
  const socket = await find(/^websocket chat (ws:\/\/\S+)$/m);
  mkdirSync(docs, { recursive: true });

  // The dashboard first, so its message log has the whole conversation.
  const view = await browser.newPage({ viewport: { width: 1280, height: 1860 }, deviceScaleFactor: 1 });
  await view.goto(dashboard);
  await view.locator("#live", { hasText: "live" }).waitFor();

  const context = await browser.newContext({ viewport: { width: 760, height: 560 }, deviceScaleFactor: 1 });
  const tabs = [];
  for (const name of ["ann", "bo"]) {
    const tab = await context.newPage();
    await tab.goto(page);
    await tab.locator("#status", { hasText: "connected" }).waitFor();
    await tab.locator("#name").fill(name);
    tabs.push(tab);
  }
  const [ann, bo] = tabs;
  const say = async (tab, text) => {
    await tab.locator("#text").fill(text);
    await tab.locator("#text").press("Enter");
    await tab.locator(".line .text", { hasText: text }).last().waitFor();
    await sleep(150);
  };
  await say(ann, "Hi! Is the new build up?");
  await say(bo, "Yes, deployed a minute ago.");
  await say(ann, "Great, I can see your messages in both tabs.");
  await bo.locator(".line .text", { hasText: "both tabs" }).waitFor();
  await bo.screenshot({ path: join(docs, "chat-web.png") });

  // A terminal client too, so the dashboard shows query metadata.
  const cliClient = new WebSocket(`${socket}/?name=wscat`);
  await new Promise((resolve, reject) => {
    cliClient.once("open", resolve);
    cliClient.once("error", reject);
  });
  await view.locator("#connection-table tbody tr").nth(2).waitFor();
  cliClient.send(JSON.stringify({ name: "wscat", text: "hello from a terminal" }));
  await view.locator("#log-table tr", { hasText: "hello from a terminal" }).first().waitFor();
  // The dashboard's own client.
  await view.locator("#client-query").fill("name=dashboard");
  await view.locator("#client-open").click();
  await view.locator("#client-status", { hasText: "open: " }).waitFor();
  await view.locator("#client-text").fill(JSON.stringify({ name: "dashboard", text: "testing from the page" }));
  await view.locator("#client-submit").click();
  await view.locator("#client-messages li", { hasText: '"type":"line"' }).waitFor();
  await view.locator("#kv-store").selectOption("history");
  await view.getByRole("button", { name: "List" }).click();
  await view.locator("#kv-keys li").first().click();
  await view.locator("#kv-value").inputValue();
  await view.locator("#send-text").fill("maintenance at 18:00");
  await sleep(300);
  await view.screenshot({ path: join(docs, "dashboard.png") });
  cliClient.close();
  console.log("wrote docs/chat-web.png and docs/dashboard.png");
} finally {
  await browser.close();
  cli.kill("SIGINT");
  await new Promise((r) => cli.once("exit", r));
  rmSync(dir, { recursive: true, force: true });
}
