// The dashboard and the browser chat, in a real headless Chromium against the real
// `nitric-like run` of examples/chat-web: what the page shows, what it sends, what it edits, and
// two tabs chatting. The test's own ws clients and the app itself check the other side.

import { spawn } from "node:child_process";
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { createServer, connect as tcpConnect } from "node:net";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { launchBrowser } from "../src/browser.js";
import {
  App,
  CLI,
  type Client,
  cleanTemp,
  connect,
  copyProject,
  dashboardFetch,
  EXAMPLES,
  runCli,
  sleep,
  startApp,
  stopAll,
  writeProject,
} from "../src/harness.js";

let browser: Browser;
/** Script errors of every page opened: a page that throws fails the test. */
const pageErrors: string[] = [];
beforeAll(async () => {
  browser = await launchBrowser();
});
afterEach(async () => {
  expect(pageErrors.splice(0)).toEqual([]);
  expect(await stopAll()).toEqual([]);
});
afterAll(async () => {
  await browser?.close();
  cleanTemp();
});

async function startChatWeb(extraArgs: string[] = []): Promise<App> {
  const app = await startApp(copyProject(join(EXAMPLES, "chat-web")), extraArgs, { CHAT_WEB_PORT: "0" });
  await app.waitFor(/chat page http:\/\/127\.0\.0\.1:\d+/);
  return app;
}

function chatPage(app: App): string {
  const url = /chat page (http:\/\/\S+)/.exec(app.stdout)?.[1];
  if (!url) throw new Error(`no chat page in the output:\n${app.stdout}`);
  return url;
}

async function openDashboard(app: App): Promise<Page> {
  if (!app.dashboard) throw new Error(`no dashboard line in the output:\n${app.stdout}`);
  const page = await browser.newPage();
  page.on("pageerror", (e) => pageErrors.push(`dashboard: ${e.message}`));
  await page.goto(app.dashboardPage as string);
  await page.locator("#live", { hasText: "live" }).waitFor();
  return page;
}

describe("the dashboard", () => {
  it("shows the example's resources, a live connection and its messages, sends to it and closes it", async () => {
    const app = await startChatWeb();
    const page = await openDashboard(app);

    const socketRow = page.locator("#sockets tbody tr", { hasText: "chat" });
    await expect.poll(() => socketRow.textContent()).toContain(app.url("chat"));
    expect((await socketRow.locator("td").allTextContents()).slice(2, 5).map((t) => t.trim())).toEqual([
      "● chat",
      "● chat",
      "● chat",
    ]);
    expect(await page.locator("#stores tbody").textContent()).toContain("history");
    const policies = await page.locator("#policies tbody tr").allTextContents();
    expect(policies).toEqual(["chatkv historydelete, get, set", "chatwebsocket chatmanage"]);

    const client = await connect(`${app.url("chat")}/?name=tester`);
    const { you } = JSON.parse((await client.next()).text) as { you: string };
    const row = page.locator(`#connection-table tr[data-id="${you}"]`);
    await expect.poll(() => row.textContent()).toContain("name=tester");
    expect(await row.textContent()).toContain("127.0.0.1");

    // The message log shows what the client sends and what it is sent, with its connection id.
    client.ws.send(JSON.stringify({ name: "tester", text: "first line" }));
    expect(JSON.parse((await client.next()).text).line.text).toBe("first line");
    const inRow = page.locator(`#log-table tr[data-direction="in"][data-id="${you}"]`, { hasText: "first line" });
    const outRow = page.locator(`#log-table tr[data-direction="out"][data-id="${you}"]`, { hasText: "first line" });
    await inRow.waitFor();
    await outRow.waitFor();
    expect(await inRow.locator("td").first().textContent()).toMatch(/^\d\d:\d\d:\d\d\.\d{3}$/);

    // Send to that one connection from the form.
    await row.getByRole("button", { name: "message" }).click();
    expect(await page.locator("#send-to").inputValue()).toBe(you);
    await page.locator("#send-text").fill("hello from the dashboard");
    await page.locator("#send-form").getByRole("button", { name: "Send" }).click();
    expect((await client.next()).text).toBe("hello from the dashboard");
    await expect.poll(() => page.locator("#send-status").textContent()).toBe(`sent to ${you}`);

    // And to everyone.
    const other = await connect(app.url("chat"));
    await other.next(); // its history
    await expect.poll(() => page.locator("#connection-table tbody tr").count()).toBe(2);
    await page.locator("#send-to").selectOption("");
    await page.locator("#send-text").fill("to all");
    await page.locator("#send-form").getByRole("button", { name: "Send" }).click();
    expect((await client.next()).text).toBe("to all");
    expect((await other.next()).text).toBe("to all");

    await row.getByRole("button", { name: "close" }).click();
    expect(await client.waitClosed()).toEqual({ code: 1000, reason: "closed from the dashboard" });
    await expect.poll(() => row.count()).toBe(0);
    await page.close();
  }, 40000);

  it("never shows connections that have closed when an older listing arrives after a newer one", async () => {
    const app = await startChatWeb();
    const page = await openDashboard(app);
    const rows = page.locator("#connection-table tbody tr");
    const first = await connect(app.url("chat"));
    await first.next(); // its history
    await expect.poll(() => rows.count()).toBe(1);
    // The next listing is slow on its way, as one of thousands of connections is: it is made at
    // once (both connections open) and reaches the page 2 s later.
    let made!: () => void;
    let arrived!: () => void;
    const slowMade = new Promise<void>((resolve) => {
      made = resolve;
    });
    const slowArrived = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    let slowed = false;
    await page.route("**/api/connections", async (route) => {
      if (slowed) return route.continue();
      slowed = true;
      const response = await route.fetch();
      made();
      await sleep(2000);
      await route.fulfill({ response });
      arrived();
    });
    const second = await connect(app.url("chat"));
    await second.next();
    await slowMade;
    // Both close while it is on its way: the listings asked for since answer with none.
    first.close();
    second.close();
    await first.waitClosed();
    await second.waitClosed();
    await slowArrived;
    await expect.poll(() => rows.count(), { timeout: 3000 }).toBe(0);
    await sleep(1000);
    expect(await rows.count()).toBe(0);
    expect(await page.locator("#connection-count").textContent()).toBe("0");
    await page.close();
  });

  it("shows characters that reorder text as their code, in queries, messages, close reasons and kv keys", async () => {
    const app = await startChatWeb();
    const page = await openDashboard(app);
    const base = app.dashboard as string;
    const rlo = "\u202e";
    // "\u202Egnp.exe" reads "exe.png"; a key "\u202Eevil" reads "live".
    const client = await connect(`${app.url("chat")}/?name=${encodeURIComponent(`${rlo}gnp.exe`)}`);
    const { you } = JSON.parse((await client.next()).text) as { you: string };
    const row = page.locator(`#connection-table tr[data-id="${you}"]`);
    await expect.poll(() => row.textContent()).toContain("name=[U+202E]gnp.exe");
    client.ws.send(JSON.stringify({ name: "x", text: `${rlo}txt.exe \u2066isolated\u2069 \u200fmark` }));
    await client.next();
    const inRow = page.locator(`#log-table tr[data-direction="in"][data-id="${you}"]`);
    await expect.poll(() => inRow.textContent()).toContain("[U+202E]txt.exe [U+2066]isolated[U+2069] [U+200F]mark");
    const saved = await dashboardFetch(app, `/api/kv/value`, {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ store: "history", key: `${rlo}evil`, value: { n: 1 } }),
    });
    expect(saved.status).toBe(200);
    const closed = await dashboardFetch(app, `/api/close`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ socket: "chat", connectionId: you, code: 4000, reason: `${rlo}eyb` }),
    });
    expect(closed.status).toBe(200);
    await page.locator(`#log-table tr[data-event="close"][data-id="${you}"]`, { hasText: "[U+202E]eyb" }).waitFor();
    await page.locator("#kv-form").getByRole("button", { name: "List" }).click();
    const key = page.locator("#kv-keys li", { hasText: "[U+202E]evil" });
    await key.click();
    // The key opened is the key itself, and it shows as chosen.
    await expect.poll(() => page.locator("#kv-key").inputValue()).toBe(`${rlo}evil`);
    await expect.poll(() => key.getAttribute("class")).toBe("selected");
    // Its value comes with a request of its own, after the key shows as chosen.
    await expect.poll(() => page.locator("#kv-value").inputValue()).toContain('"n": 1');
    // Nowhere on the page does one remain.
    expect(await page.locator("main").innerText()).not.toMatch(/[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/);
    await page.close();
  });

  it("edits a kv value, and the app serves the edited value", async () => {
    const app = await startChatWeb();
    const client = await connect(app.url("chat"));
    await client.next();
    client.ws.send(JSON.stringify({ name: "ann", text: "a typo" }));
    await client.next();

    const page = await openDashboard(app);
    await page.locator("#kv-store").selectOption("history");
    await page.locator("#kv-prefix").fill("line:");
    await page.getByRole("button", { name: "List" }).click();
    const key = page.locator("#kv-keys li").first();
    await key.waitFor();
    expect(await page.locator("#kv-keys li").count()).toBe(1);
    await key.click();
    await expect.poll(() => page.locator("#kv-value").inputValue()).toContain('"a typo"');
    const value = JSON.parse(await page.locator("#kv-value").inputValue());
    await page.locator("#kv-value").fill(JSON.stringify({ ...value, text: "fixed in the dashboard" }));
    await page.getByRole("button", { name: "Save" }).click();
    await expect.poll(() => page.locator("#kv-status").textContent()).toMatch(/^saved line:/);

    // The app reads the store: a new connection gets the history, edited.
    const later = await connect(app.url("chat"));
    const history = JSON.parse((await later.next()).text) as { lines: { text: string; name: string }[] };
    expect(history.lines.map((l) => `${l.name}: ${l.text}`)).toEqual(["ann: fixed in the dashboard"]);
    // Its row in the connection table moves what is below it: the clicks wait until it is there.
    await expect.poll(() => page.locator("#connection-table tbody tr").count()).toBe(2);

    // Invalid JSON is refused on the page; deleting removes the key for the app too.
    await page.locator("#kv-value").fill("{ not json");
    await page.getByRole("button", { name: "Save" }).click();
    await expect.poll(() => page.locator("#kv-status").textContent()).toMatch(/^not JSON/);
    await page.getByRole("button", { name: "Delete" }).click();
    await expect.poll(() => page.locator("#kv-status").textContent()).toMatch(/^deleted line:/);
    const last = await connect(app.url("chat"));
    expect(JSON.parse((await last.next()).text).lines).toEqual([]);
    await page.close();
  }, 40000);

  it("draws at most the newest 200 connections, finds the others by a filter, and keeps a chosen one to send to", async () => {
    const app = await startChatWeb();
    const url = app.url("chat");
    const clients: Client[] = [];
    for (let i = 0; i < 230; i += 10) {
      clients.push(...(await Promise.all(Array.from({ length: 10 }, (_, j) => connect(`${url}?n=${i + j}`)))));
    }
    const page = await openDashboard(app);
    await expect.poll(() => page.locator("#connection-count").textContent(), { timeout: 15000 }).toBe("230");
    await expect.poll(() => page.locator("#connection-table tbody tr").count()).toBe(200);
    expect(await page.locator("#connections-more").textContent()).toBe(
      "showing the newest 200 of 230: filter to find the others",
    );
    // The oldest is not drawn; its query finds it.
    const listed = (await (await dashboardFetch(app, "/api/connections")).json()) as {
      id: string;
      query: Record<string, string[]>;
    }[];
    const oldest = listed.find((c) => c.query.n?.[0] === "0") as { id: string };
    expect(await page.locator(`#connection-table tr[data-id="${oldest.id}"]`).count()).toBe(0);
    await page.fill("#connection-filter", oldest.id);
    await expect.poll(() => page.locator("#connection-table tbody tr").count()).toBe(1);
    expect(await page.locator("#connections-more").textContent()).toBe("1 of 230 match the filter");
    const row = page.locator(`#connection-table tr[data-id="${oldest.id}"]`);
    await row.getByRole("button", { name: "message" }).click();
    // Chosen, then hidden by clearing the filter: it stays the one a send goes to.
    await page.fill("#connection-filter", "");
    await expect.poll(() => page.locator("#connection-table tbody tr").count()).toBe(200);
    expect(await page.locator("#send-to").inputValue()).toBe(oldest.id);
    await page.locator("#send-text").fill("only to the oldest");
    await page.locator("#send-form").getByRole("button", { name: "Send" }).click();
    const first = clients[0] as Client;
    await expect.poll(() => first.frames.some((f) => f.text === "only to the oldest")).toBe(true);
    await sleep(300);
    expect(clients.slice(1).some((c) => c.frames.some((f) => f.text === "only to the oldest"))).toBe(false);
    for (const c of clients) c.close();
    await page.close();
  }, 60000);

  // Tests of the dashboard's API that leave nothing behind (each closes what it opens) share one run.
  describe("on one run of examples/chat-web", () => {
    let app!: App;
    beforeAll(async () => {
      const dir = copyProject(join(EXAMPLES, "chat-web"));
      const child = spawn(process.execPath, [CLI, "run", dir, "--random-ports", "--plain"], {
        env: { ...process.env, NO_COLOR: "1", CHAT_WEB_PORT: "0" },
      });
      app = new App(dir, child);
      await app.waitFor(/^ready: /m, 30000);
      await app.waitFor(/chat page http:\/\/127\.0\.0\.1:\d+/);
    }, 40000);
    afterAll(async () => {
      // Not among the apps each test's stopAll stops: stopped, and checked to exit cleanly, here.
      if (app === undefined) return;
      const { code } = await app.stop();
      expect(code, app.stderr).toBe(0);
    });

    it("serves its API only to who has the address run printed: no key or another run's is refused with 401, and the page says what to open", async () => {
      const base = app.dashboard as string;
      // Every user of the machine reaches 127.0.0.1; the run's key is in the address it printed only.
      expect(app.stdout).toMatch(/^dashboard http:\/\/127\.0\.0\.1:\d+\/#key=[\w-]{24}$/m);
      const none = await fetch(`${base}/api/state`);
      expect(none.status).toBe(401);
      expect(((await none.json()) as { error: string }).error).toBe(
        "this request has no key: open the dashboard at the address run printed, which ends with #key=...",
      );
      const other = await fetch(`${base}/api/connections`, { headers: { "X-Dashboard-Key": "x".repeat(24) } });
      expect(other.status).toBe(401);
      expect(((await other.json()) as { error: string }).error).toContain("this key is not this run's");
      const client = await connect(app.url("chat"));
      await sleep(200);
      const framesBefore = client.frames.length;
      for (const [path, init] of [
        [
          "/api/send",
          { method: "POST", headers: { "Content-Type": "application/json" }, body: '{"socket":"chat","text":"x"}' },
        ],
        ["/api/kv/keys?store=messages", {}],
        ["/api/events", {}],
        [`/api/events?key=${"y".repeat(24)}`, {}],
      ] as const) {
        expect((await fetch(`${base}${path}`, init)).status, path).toBe(401);
      }
      // Its key in a header of another request than the event stream's does not count from the query.
      expect((await fetch(`${base}/api/state?key=${app.dashboardKey}`)).status).toBe(401);
      expect(
        (await fetch(`${base}/api/events?key=${app.dashboardKey}`, { signal: AbortSignal.timeout(2000) })).status,
      ).toBe(200);
      expect((await dashboardFetch(app, "/api/state")).status).toBe(200);
      // The refused send reached no client; the page's own files hold no data and need no key.
      await sleep(200);
      expect(client.frames.length).toBe(framesBefore);
      client.close();
      expect((await fetch(`${base}/`)).status).toBe(200);
      const page = await browser.newPage();
      page.on("pageerror", (e) => pageErrors.push(`dashboard: ${e.message}`));
      await page.goto(base);
      await page.locator("#live", { hasText: "open the dashboard at the address run printed" }).waitFor();
      await page.close();
    }, 40000);

    it("answers only requests made to it: other hosts, non-JSON writes and other origins are refused", async () => {
      const base = app.dashboard as string;
      expect((await dashboardFetch(app, `/api/state`)).status).toBe(200);
      // fetch() will not set Host; a DNS-rebinding page's requests carry its own name there.
      const port = new URL(base).port;
      for (const host of ["evil.example", `evil.example:${port}`, `127.0.0.1.nip.io:${port}`]) {
        const rebound = await new Promise<{ status: number; body: string }>((resolve, reject) => {
          const req = request(`${base}/api/state`, { headers: { Host: host } }, (res) => {
            let body = "";
            res.on("data", (d) => {
              body += d;
            });
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
          });
          req.on("error", reject);
          req.end();
        });
        expect(rebound).toEqual({
          status: 421,
          body: JSON.stringify({
            error: `this request is addressed to "${host}", not to 127.0.0.1, localhost or [::1]: open the dashboard at the address run printed (it answers no other name, which a web page could point at this machine)`,
          }),
        });
      }
      const form = await dashboardFetch(app, `/api/send`, { method: "POST", body: "socket=chat&text=x" });
      expect(form.status).toBe(415);
      const foreign = await dashboardFetch(app, `/api/send`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Origin: "https://evil.example" },
        body: JSON.stringify({ socket: "chat", text: "x" }),
      });
      expect(foreign.status).toBe(403);
      expect(await foreign.json()).toEqual({
        error:
          'a page of another origin ("https://evil.example") may not change anything here: use the dashboard\'s own page, at the address run printed',
      });
      const unknownStore = await dashboardFetch(app, `/api/kv/keys?store=nope`);
      expect(unknownStore.status).toBe(404);
      expect(await unknownStore.json()).toEqual({ error: 'kv store "nope" is not in the spec' });
    });

    it("works through a port forward, which names localhost on a port of its own, as ssh -L does", async () => {
      const port = Number(new URL(app.dashboard as string).port);
      // What `ssh -L <port>:127.0.0.1:<dashboard port>` is on this side: bytes passed both ways.
      const piped = new Set<{ destroy(): void }>();
      const forward = createServer((from) => {
        const to = tcpConnect(port, "127.0.0.1");
        piped.add(from).add(to);
        from.pipe(to).pipe(from);
        from.on("error", () => to.destroy());
        to.on("error", () => from.destroy());
      });
      await new Promise<void>((r) => forward.listen(0, "127.0.0.1", r));
      try {
        const forwarded = (forward.address() as { port: number }).port;
        const page = await browser.newPage();
        page.on("pageerror", (e) => pageErrors.push(`dashboard: ${e.message}`));
        await page.goto(`http://localhost:${forwarded}/#key=${app.dashboardKey}`);
        await page.locator("#live", { hasText: "live" }).waitFor();
        const client = await connect(`${app.url("chat")}/?name=tester`);
        const { you } = JSON.parse((await client.next()).text) as { you: string };
        const row = page.locator(`#connection-table tr[data-id="${you}"]`);
        await row.getByRole("button", { name: "message" }).click();
        await page.locator("#send-text").fill("through the forward");
        await page.locator("#send-form").getByRole("button", { name: "Send" }).click();
        expect((await client.next()).text).toBe("through the forward");
        client.close();
        await page.close();
      } finally {
        for (const s of piped) s.destroy();
        await new Promise((r) => forward.close(r));
      }
    });

    it("takes names like Object.prototype's as data: unknown paths, sockets and stores are 404, a malformed path 400, never a 500", async () => {
      const base = app.dashboard as string;
      const port = Number(new URL(base).port);
      const names = Object.getOwnPropertyNames(Object.prototype);
      for (const name of names) {
        expect((await fetch(`${base}/${name}`)).status).toBe(404);
        expect((await dashboardFetch(app, `/api/kv/keys?store=${name}`)).status).toBe(404);
        const send = await dashboardFetch(app, `/api/send`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(
            Object.fromEntries([
              ["socket", name],
              ["text", "x"],
              [name, 1],
            ]),
          ),
        });
        expect(send.status).toBe(404);
        expect(await send.json()).toEqual({ error: `websocket "${name}" is not in the spec` });
      }
      // A request target no URL parser takes.
      const malformed = await new Promise<number>((resolve, reject) => {
        const req = request({ host: "127.0.0.1", port, path: "//[", headers: { Host: `127.0.0.1:${port}` } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on("error", reject);
        req.end();
      });
      expect(malformed).toBe(400);
      // A connection whose query and headers use those names is listed with them, as its own keys.
      const query = names.map((n, i) => `${n}=${i}`).join("&");
      const client = await connect(`${app.url("chat")}/?${query}`, Object.fromEntries(names.map((n) => [n, "h"])));
      const listed = (await (await dashboardFetch(app, `/api/connections`)).json()) as {
        query: Record<string, string[]>;
        headers: Record<string, string[]>;
      }[];
      const mine = listed.find((c) => Object.hasOwn(c.query, "__proto__"));
      expect(Object.getOwnPropertyDescriptor(mine?.query ?? {}, "__proto__")?.value).toEqual([
        String(names.indexOf("__proto__")),
      ]);
      expect(Object.keys(mine?.query ?? {}).sort()).toEqual([...names].sort());
      expect(Object.hasOwn(mine?.headers ?? {}, "constructor") && mine?.headers.constructor).toEqual(["h"]);
      client.close();
      expect(app.stderr).not.toMatch(/internal error/);
      expect((await dashboardFetch(app, `/api/state`)).status).toBe(200);
    });
  });

  it("answers a send to a socket whose gateway failed to start with 503 and the reason, never a 500", async () => {
    // A port the test holds: the gateway of a socket pinned to it cannot start.
    const holder = createServer();
    await new Promise<void>((r) => holder.listen(0, "127.0.0.1", r));
    const taken = (holder.address() as { port: number }).port;
    const dir = writeProject({
      "nitric-like.yaml": `name: pinned\nservices:\n  - match: services/*.ts\nwebsockets:\n  extra:\n    port: ${taken}\n`,
      "services/app.ts":
        'import { websocket } from "@nitric-like/sdk";\nwebsocket("socket").on("message", async () => {});\n',
    });
    // Not --random-ports, which would not pin the port; the dashboard on a free one.
    const child = spawn(process.execPath, [CLI, "run", dir, "--plain", "--dashboard-port", "0"], {
      env: { ...process.env, NO_COLOR: "1" },
    });
    const app = new App(dir, child);
    try {
      await app.waitFor(/^ready: /m);
      // A save declares "extra": run goes on, its gateway does not start.
      writeFileSync(
        join(dir, "services", "app.ts"),
        'import { websocket } from "@nitric-like/sdk";\nwebsocket("socket").on("message", async () => {});\nwebsocket("extra").on("message", async () => {});\n',
      );
      await app.waitFor(new RegExp(`port ${taken} is already in use`));
      const reason = `websocket "extra" is not running: its gateway failed to start: port ${taken} is already in use; pick another under websockets.extra.port in the project file, or run with --random-ports`;
      await expect
        .poll(async () => {
          const state = (await (await dashboardFetch(app, "/api/state")).json()) as {
            spec?: { resources?: { name: string }[] };
          };
          return JSON.stringify(state.spec?.resources ?? []);
        })
        .toContain('"extra"');
      for (const body of [
        { socket: "extra", text: "x" },
        { socket: "extra", connectionId: "abc", text: "x" },
      ]) {
        const send = await dashboardFetch(app, "/api/send", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(body),
        });
        expect(send.status).toBe(503);
        expect(await send.json()).toEqual({ error: reason });
      }
      const close = await dashboardFetch(app, "/api/close", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ socket: "extra", connectionId: "abc" }),
      });
      expect(close.status).toBe(503);
      expect(await close.json()).toEqual({ error: reason });
      // No bug logged: a 503 is the dashboard's answer, not its failure.
      expect(app.stderr).not.toContain("answered it with 500");
    } finally {
      await app.stop();
      await new Promise((r) => holder.close(r));
    }
  }, 60000);

  it("connects to a socket as a client of its own (Try a socket): messages both ways as text, seen by the app and other clients, closed with its code", async () => {
    const app = await startChatWeb();
    const page = await openDashboard(app);
    const other = await connect(`${app.url("chat")}/?name=other`);
    await other.next();
    await page.fill("#client-query", "?name=page");
    await page.click("#client-open");
    await page.locator("#client-status", { hasText: "open: " }).waitFor();
    expect(await page.locator("#client-status").textContent()).toBe(`open: ${app.url("chat")}/?name=page`);
    expect(await page.locator("#client-open").isDisabled()).toBe(true);
    const lines = page.locator("#client-messages li");
    // The app's first message to it, then what it sends and what the app broadcasts back.
    await expect.poll(() => lines.count()).toBe(1);
    const { you } = JSON.parse(((await lines.first().textContent()) ?? "").replace(/^\S+ ← /, "")) as { you: string };
    const hostile = '<img src=x onerror="document.title=1">';
    await page.fill("#client-text", JSON.stringify({ name: "page", text: hostile }));
    await page.click("#client-submit");
    const heard = JSON.parse((await other.next()).text) as { line: { from: string; text: string } };
    expect(heard.line).toMatchObject({ from: you, text: hostile });
    await expect.poll(() => lines.count()).toBe(3);
    expect(await lines.nth(1).textContent()).toMatch(/^\S+ → \{"name":"page","text":"<img/);
    expect(await lines.nth(2).textContent()).toContain(`"from":"${you}"`);
    other.ws.send(JSON.stringify({ name: "other", text: "hello page" }));
    await expect.poll(() => lines.count()).toBe(4);
    expect(await lines.nth(3).textContent()).toContain('"text":"hello page"');
    // Text, never markup.
    expect(await page.locator("#client-messages img").count()).toBe(0);
    expect(await page.title()).not.toBe("1");
    // It is a connection like any other: listed, and its messages in the log.
    await expect.poll(() => page.locator(`#connection-table tr[data-id="${you}"]`).count()).toBe(1);
    await page.click("#client-close");
    await page.locator("#client-status", { hasText: "closed" }).waitFor();
    expect(await page.locator("#client-status").textContent()).toBe("closed 1000: closed from the dashboard");
    expect(await page.locator("#client-open").isDisabled()).toBe(false);
    await expect.poll(() => page.locator(`#connection-table tr[data-id="${you}"]`).count()).toBe(0);
    // An invalid subprotocol is refused by the browser before anything connects.
    await page.fill("#client-protocol", "two words");
    await page.click("#client-open");
    expect(await page.locator("#client-status").textContent()).toMatch(/^cannot connect: .*two words/);
    other.close();
    await page.close();
  });

  it("Try a socket: a refused upgrade says where its reason is, bytes show as base64, and the list keeps the newest 200", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: tryit\nservices:\n  - match: services/*.ts\n",
      "services/tryit.ts": `import { websocket } from "@nitric-like/sdk";
const guarded = websocket("guarded", { allowedOrigins: ["https://app.example.com"] });
guarded.on("connect", () => {});
guarded.on("disconnect", () => {});
guarded.on("message", () => {});
const echo = websocket("echo");
echo.on("connect", () => {});
echo.on("disconnect", () => {});
echo.on("message", (ctx) => (ctx.text() === "bytes" ? new Uint8Array([1, 2, 3]) : ctx.binary ? \`binary \${ctx.data.length}\` : ctx.text()));
`,
    });
    const app = await startApp(dir);
    const page = await openDashboard(app);
    await expect.poll(() => page.locator("#client-socket option").allTextContents()).toEqual(["echo", "guarded"]);
    // The dashboard's origin is not one the socket allows: 403, which a browser does not show.
    await page.selectOption("#client-socket", "guarded");
    await page.click("#client-open");
    await page.locator("#client-status", { hasText: "closed" }).waitFor();
    expect(await page.locator("#client-status").textContent()).toBe(
      "closed 1006 (no close frame: the upgrade was refused or the connection dropped; the log below shows a refusal's status and reason)",
    );
    await expect.poll(() => page.locator("#log-table tbody tr[data-refused='403']").count()).toBe(1);

    await page.selectOption("#client-socket", "echo");
    await page.click("#client-open");
    await page.locator("#client-status", { hasText: "open: " }).waitFor();
    const lines = page.locator("#client-messages li");
    await page.fill("#client-text", "bytes");
    await page.click("#client-submit");
    await expect.poll(() => lines.count()).toBe(2);
    expect(await lines.nth(1).textContent()).toMatch(/^\S+ ← \(binary, 3 bytes\) AQID$/);
    await page.check("#client-binary");
    await page.fill("#client-text", "abcde");
    await page.click("#client-submit");
    await expect.poll(() => lines.count()).toBe(4);
    expect(await lines.nth(2).textContent()).toMatch(/^\S+ → \(binary, 5 bytes\) YWJjZGU=$/);
    expect(await lines.nth(3).textContent()).toMatch(/^\S+ ← binary 5$/);
    await page.uncheck("#client-binary");
    // 110 sends, each its text typed and Send clicked, made in the page itself: two of the test's
    // round trips to the browser a send took most of this test's time. Each waits for the echo of
    // the one before, as a user reading the answers would (10 s for each at most).
    await page.evaluate(`(async () => {
      const text = document.getElementById("client-text");
      const send = document.getElementById("client-submit");
      const list = document.getElementById("client-messages");
      for (let i = 0; i < 110; i++) {
        text.value = "n" + i;
        text.dispatchEvent(new Event("input", { bubbles: true }));
        send.click();
        const deadline = Date.now() + 10000;
        while (!(list.lastElementChild?.textContent ?? "").endsWith("\u2190 n" + i)) {
          if (Date.now() > deadline) throw new Error("no echo of n" + i + " in 10 s");
          await new Promise((r) => setTimeout(r, 5));
        }
      }
    })()`);
    await expect.poll(() => lines.last().textContent()).toMatch(/← n109$/);
    // 224 lines logged, the newest 200 kept: the 4 above and the first 20 of the n-lines go (an
    // echo that came back after the next send was logged would make the 21st ← n9, not → n10).
    const kept = await lines.allTextContents();
    expect(kept).toHaveLength(200);
    expect(kept[0]).toMatch(/ (→ n10|← n9)$/);
    expect(kept.filter((t) => / [→←] n[0-8]$/.test(t))).toEqual([]);
    await page.close();
  }, 60000);

  it("shows each socket's limits from the project file, and a connection refused by one in the log", async () => {
    const dir = copyProject(join(EXAMPLES, "chat-web"));
    appendFileSync(
      join(dir, "nitric-like.yaml"),
      "limits:\n  maxMessageBytes: 64KB\n  idleTimeout: 90s\n  maxConnections: 1\n  messagesPerSecond: 20\n",
    );
    const app = await startApp(dir, [], { CHAT_WEB_PORT: "0" });
    const page = await openDashboard(app);
    const row = page.locator("#limits tbody tr", { hasText: "chat" });
    await expect
      .poll(async () => (await row.locator("td").allTextContents()).map((t) => t.trim()))
      .toEqual(["chat", "64 KB", "90s", "2h", "1", "20/s (20)", "5s"]);

    const first = await connect(app.url("chat"));
    await expect(connect(app.url("chat"))).rejects.toThrow(/429/);
    const refused = page.locator("#log-table tbody tr[data-refused='429']");
    await expect.poll(() => refused.count()).toBe(1);
    expect(await refused.textContent()).toContain('HTTP 429: websocket "chat"');
    first.close();
    await page.close();
  }, 40000);

  it("lists a socket's message routes under its message handler, each with its service, registered or not", async () => {
    const dir = copyProject(join(EXAMPLES, "rooms"));
    const app = await startApp(dir, [], { ROOMS_WEB_PORT: "0" });
    const page = await openDashboard(app);
    const routes = page.locator('#sockets tbody tr[data-socket="rooms"] .route');
    await expect.poll(() => routes.allTextContents()).toEqual(["● action: join rooms", "● action: say rooms"]);
    // The message handler's own mark is its own registration's, not a route's.
    const message = page.locator('#sockets tbody tr[data-socket="rooms"] td').nth(3);
    expect(await message.getAttribute("title")).toBe("registered");
    // A route saved away: the spec follows, and the dashboard with it.
    const file = join(dir, "services", "rooms.ts");
    writeFileSync(file, readFileSync(file, "utf8").replace('socket.route("say",', 'socket.route("speak",'));
    await expect
      .poll(() => routes.allTextContents(), { timeout: 20000 })
      .toEqual(["● action: join rooms", "● action: speak rooms"]);
    // And the gateway selects the routes of the saved code: "speak" is a route, "say" is not.
    const client = await connect(`${app.url("rooms")}/?token=t-ann`);
    expect(JSON.parse((await client.next()).text)).toMatchObject({ type: "hello", user: "ann" });
    client.ws.send(JSON.stringify({ action: "speak" }));
    expect(JSON.parse((await client.next()).text)).toEqual({
      type: "error",
      message: 'rooms: say needs a text, {"action":"say","text":"..."}',
    });
    client.ws.send(JSON.stringify({ action: "say", text: "hi" }));
    expect(JSON.parse((await client.next()).text)).toMatchObject({
      message: expect.stringContaining("unknown message"),
    });
    client.close();
    // A routeBy saved in: the routes are listed by that property.
    const routed = readFileSync(file, "utf8").replace(/websocket(<[^>]*>)?\("rooms", \{/, '$& routeBy: "type",');
    expect(routed).toContain('routeBy: "type"');
    writeFileSync(file, routed);
    await expect
      .poll(() => routes.allTextContents(), { timeout: 20000 })
      .toEqual(["● type: join rooms", "● type: speak rooms"]);
    const typed = await connect(`${app.url("rooms")}/?token=t-ann`);
    expect(JSON.parse((await typed.next()).text)).toMatchObject({ type: "hello" });
    typed.ws.send(JSON.stringify({ type: "speak" }));
    expect(JSON.parse((await typed.next()).text)).toEqual({
      type: "error",
      message: 'rooms: say needs a text, {"action":"say","text":"..."}',
    });
    typed.close();
    await page.close();
  }, 60000);

  it("under --provider aws lists the emulator's connections and their messages, sends and closes, and browses and edits its kv stores in DynamoDB", async () => {
    const app = await startApp(copyProject(join(EXAMPLES, "chat")), ["--provider", "aws"]);
    const page = await openDashboard(app);
    await expect.poll(() => page.locator("#sockets tbody").textContent()).toContain(app.url("socket"));

    const one = await connect(`${app.url("socket")}?name=one`);
    const two = await connect(app.url("socket"));
    await expect.poll(() => page.locator("#connection-table tbody tr").count()).toBe(2);
    const listed = (await (await dashboardFetch(app, `/api/connections`)).json()) as {
      id: string;
      socket: string;
      query: Record<string, string[]>;
    }[];
    const first = listed.find((c) => c.query.name?.[0] === "one");
    expect(first?.socket).toBe("socket");
    const id = first?.id as string;
    const row = page.locator(`#connection-table tr[data-id="${id}"]`);
    expect(await row.textContent()).toContain("name=one");

    // The chat broadcasts through the Management API: both frames show in the log.
    one.ws.send("hello from one");
    expect((await two.next()).text).toBe("hello from one");
    // The page's own client reaches the emulated API too, on the stage's URL.
    await page.fill("#client-query", "name=page");
    await page.click("#client-open");
    await page.locator("#client-status", { hasText: "open: " }).waitFor();
    expect(await page.locator("#client-status").textContent()).toBe(`open: ${app.url("socket")}?name=page`);
    await page.fill("#client-text", "hello from the page");
    await page.click("#client-submit");
    expect((await two.next()).text).toBe("hello from the page");
    expect((await one.next()).text).toBe("hello from the page");
    await page.click("#client-close");
    await page.locator("#client-status", { hasText: "closed" }).waitFor();
    await expect.poll(() => page.locator("#connection-table tbody tr").count()).toBe(2);
    await page.locator(`#log-table tr[data-direction="in"][data-id="${id}"]`, { hasText: "hello from one" }).waitFor();
    await page.locator('#log-table tr[data-direction="out"]', { hasText: "hello from one" }).waitFor();

    await row.getByRole("button", { name: "message" }).click();
    await page.locator("#send-text").fill("from the dashboard");
    await page.locator("#send-form").getByRole("button", { name: "Send" }).click();
    expect((await one.next()).text).toBe("from the dashboard");
    await row.getByRole("button", { name: "close" }).click();
    expect(await one.waitClosed()).toEqual({ code: 1000, reason: "closed from the dashboard" });
    await expect.poll(() => page.locator("#connection-table tbody tr").count()).toBe(1);

    // API Gateway applies its own limits: no empty limits table.
    expect(await page.locator("#limits").isVisible()).toBe(false);
    expect(await page.locator("#send-form").getByRole("button", { name: "Send" }).isDisabled()).toBe(false);

    // The chat keeps its connections in the kv store "connections", a table of sharded items:
    // the browser lists the open one's id (the closed one's was deleted by its disconnect).
    const twoId = (listed.find((c) => c.id !== id) as { id: string }).id;
    // The closed ones' $disconnect functions run after the connections are gone from the list (a
    // busy machine may start an execution environment for them): their deletes first.
    await expect
      .poll(
        async () =>
          ((await (await dashboardFetch(app, "/api/kv/keys?store=connections")).json()) as { keys: string[] }).keys,
        {
          timeout: 15000,
        },
      )
      .toEqual([twoId]);
    await page.locator("#kv-store").selectOption("connections");
    await page.getByRole("button", { name: "List" }).click();
    const key = page.locator("#kv-keys li", { hasText: twoId });
    await key.waitFor();
    // The page may still show the list it loaded before the closed connection left the store.
    await expect.poll(() => page.locator("#kv-keys li").count()).toBe(1);
    await key.click();
    await expect.poll(() => page.locator("#kv-value").inputValue()).toContain('"connectedAt"');
    const stored = JSON.parse(await page.locator("#kv-value").inputValue()) as { connectedAt: number };
    // Deleted in the dashboard, the id is gone for the app: a new client's message no longer reaches it.
    await page.getByRole("button", { name: "Delete" }).click();
    await expect.poll(() => page.locator("#kv-status").textContent()).toMatch(/^deleted /);
    const three = await connect(app.url("socket"));
    three.ws.send("not to two");
    await sleep(500);
    expect(two.frames).toEqual([]);
    // Saved back, it reaches it again; a value DynamoDB would refuse is refused with the reason.
    await page.locator("#kv-value").fill(JSON.stringify(stored));
    await page.getByRole("button", { name: "Save" }).click();
    await expect.poll(() => page.locator("#kv-status").textContent()).toMatch(/^saved /);
    three.ws.send("to two again");
    expect((await two.next()).text).toBe("to two again");
    const refused = await dashboardFetch(app, `/api/kv/value`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ store: "connections", key: twoId, value: { n: 1e126 } }),
    });
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { error: string }).error).toMatch(/DynamoDB/);
    two.close();
    three.close();
    await page.close();
  }, 60000);

  it("under --provider aws sends and broadcasts as API Gateway posts: over 128 KB refused with 400 and a service's words, in frames of at most 32 KB", async () => {
    const app = await startApp(copyProject(join(EXAMPLES, "chat")), ["--provider", "aws"]);
    const client = await connect(app.url("socket"));
    // The frames as they come off the wire (a server's are not masked), before ws joins them.
    const frames: [opcode: number, fin: boolean, length: number][] = [];
    let buffered = Buffer.alloc(0);
    (client.ws as unknown as { _socket: NodeJS.EventEmitter })._socket.prependListener("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        if (buffered.length < 2) return;
        const len7 = (buffered[1] as number) & 0x7f;
        const at = len7 === 126 ? 4 : len7 === 127 ? 10 : 2;
        if (buffered.length < at) return;
        const length =
          len7 === 126 ? buffered.readUInt16BE(2) : len7 === 127 ? Number(buffered.readBigUInt64BE(2)) : len7;
        if (buffered.length < at + length) return;
        frames.push([(buffered[0] as number) & 0x0f, ((buffered[0] as number) & 0x80) !== 0, length]);
        buffered = buffered.subarray(at + length);
      }
    });
    await expect
      .poll(async () => ((await (await dashboardFetch(app, "/api/connections")).json()) as unknown[]).length)
      .toBe(1);
    const [{ id }] = (await (await dashboardFetch(app, "/api/connections")).json()) as [{ id: string }];
    const send = (body: object) =>
      dashboardFetch(app, "/api/send", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
    const KB = 1024;
    for (const body of [
      { socket: "socket", text: "x".repeat(128 * KB + 1) },
      { socket: "socket", connectionId: id, text: "x".repeat(128 * KB + 1) },
    ]) {
      const refused = await send(body);
      expect(refused.status).toBe(400);
      expect(await refused.json()).toEqual({
        error: 'websocket "socket": the message is too large for API Gateway (at most 128 KB); send less',
      });
    }
    const one = await send({ socket: "socket", connectionId: id, text: "y".repeat(100 * KB) });
    expect(one.status).toBe(200);
    expect((await client.next()).text).toBe("y".repeat(100 * KB));
    const all = await send({ socket: "socket", text: "z".repeat(128 * KB), binary: true });
    expect(await all.json()).toEqual({ sent: 1 });
    // UTF-8 data posted through API Gateway reaches its client as text, whatever the sender asked.
    const got = await client.next();
    expect(got.text).toBe("z".repeat(128 * KB));
    expect(frames).toEqual([
      [0x1, false, 32 * KB],
      [0x0, false, 32 * KB],
      [0x0, false, 32 * KB],
      [0x0, true, 4 * KB],
      [0x1, false, 32 * KB],
      [0x0, false, 32 * KB],
      [0x0, false, 32 * KB],
      [0x0, true, 32 * KB],
    ]);
    client.close();
  }, 60000);

  for (const provider of ["local", "aws"] as const) {
    it(`answers a send that closes a client that does not read with 503 naming the 1008 close, not 404 (${provider})`, async () => {
      const app = await startApp(copyProject(join(EXAMPLES, "chat")), provider === "aws" ? ["--provider", "aws"] : []);
      const lazy = await connect(app.url("socket"));
      // Its socket paused: the client reads nothing, so what is sent to it waits in the gateway.
      (lazy.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause();
      await expect
        .poll(async () => ((await (await dashboardFetch(app, "/api/connections")).json()) as unknown[]).length)
        .toBe(1);
      const [{ id }] = (await (await dashboardFetch(app, "/api/connections")).json()) as [{ id: string }];
      const send = () =>
        dashboardFetch(app, "/api/send", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ socket: "socket", connectionId: id, text: "z".repeat(128 * 1024) }),
        });
      let answer = await send();
      let sent = 0;
      while (answer.status === 200 && sent < 1000) {
        sent++;
        answer = await send();
      }
      // 8 MB waited for it (and what the kernel's buffers took) before the send that closed it.
      expect(sent).toBeGreaterThan(60);
      expect(answer.status).toBe(503);
      expect(await answer.json()).toEqual({
        error: `websocket "socket": connection ${JSON.stringify(id)} was closed with 1008 because it was not reading (too much waited to be sent to it), so this message may not reach it; its client must read what it is sent, then connect again`,
      });
      // Once closed it is not open, as for any closed connection.
      const after = await send();
      expect(after.status).toBe(404);
      (lazy.ws as unknown as { _socket: { resume(): void } })._socket.resume();
      expect([1008, 1006]).toContain((await lazy.waitClosed()).code);
    }, 60000);
  }

  for (const provider of ["local", "aws"] as const) {
    it(`shows each connection's identity, rooms and state as text, a long state cut short until opened (${provider})`, async () => {
      const dir = writeProject({
        "nitric-like.yaml": "name: who\nservices:\n  - match: services/*.ts\n",
        "services/who.ts": [
          'import { websocket } from "@nitric-like/sdk";',
          'const room = websocket("room", {',
          '  authorize: (req) => ({ identity: { user: req.query.user?.[0] ?? "nobody" } }),',
          "});",
          'room.on("connect", async (ctx) => {',
          '  await ctx.connection.setState({ note: ctx.query.note?.[0] ?? "", pad: "p".repeat(Number(ctx.query.pad?.[0] ?? 0)) });',
          '  await ctx.connection.join("lobby");',
          '  await ctx.connection.join("games");',
          "});",
          'room.on("message", async (ctx) => {',
          "  await ctx.connection.join(ctx.text());",
          '  return "joined";',
          "});",
        ].join("\n"),
      });
      const app = await startApp(dir, provider === "aws" ? ["--provider", "aws"] : []);
      const page = await openDashboard(app);
      const hostile = "<img src=x onerror=window.__pwned=1>";
      const client = await connect(
        `${app.url("room")}?user=${encodeURIComponent(hostile)}&note=${encodeURIComponent("<b>bold</b>")}&pad=3000`,
      );
      await expect.poll(() => page.locator("#connection-table tbody tr").count()).toBe(1);
      const row = page.locator("#connection-table tbody tr").first();
      const auth = row.locator(".extra.auth");
      await expect.poll(() => auth.textContent()).toContain(JSON.stringify({ user: hostile }));
      await expect.poll(() => row.locator(".extra.rooms").textContent()).toBe("rooms games, lobby");
      // 3,000 characters of state: a preview that opens to the whole of it.
      const state = row.locator("details.extra.state");
      expect(await state.locator("summary").textContent()).toContain('{"note":"<b>bold</b>","pad":"ppp');
      expect(await state.locator("pre").isVisible()).toBe(false);
      await state.locator("summary").click();
      expect(await state.locator("pre").textContent()).toBe(
        JSON.stringify({ note: "<b>bold</b>", pad: "p".repeat(3000) }, null, 2),
      );
      // Text, never markup: no element was made from the client's strings, and nothing ran.
      expect(await row.locator("img, b").count()).toBe(0);
      expect(await page.evaluate("window.__pwned")).toBeUndefined();

      // A room joined later, by a message handler, shows too.
      client.ws.send("later");
      expect((await client.next()).text).toBe("joined");
      await expect.poll(() => row.locator(".extra.rooms").textContent()).toBe("rooms games, later, lobby");
      expect(await row.locator(".extra.unreadable").count()).toBe(0);
      // Drawn again, the list keeps the state the user opened open.
      expect(await state.locator("pre").isVisible()).toBe(true);

      // Opened at a half screen's and a phone's width, the whole state stays inside the window.
      for (const width of [720, 390]) {
        await page.setViewportSize({ width, height: 800 });
        const { scrollWidth, innerWidth } = (await page.evaluate(
          "({ scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth })",
        )) as { scrollWidth: number; innerWidth: number };
        expect(scrollWidth, `page width at ${width} px`).toBeLessThanOrEqual(innerWidth);
        const box = await state.locator("pre").boundingBox();
        expect(box && box.x >= 0 && box.x + box.width <= width, `state at ${width} px: ${JSON.stringify(box)}`).toBe(
          true,
        );
      }
      client.close();
      await page.close();
    }, 90000);
  }

  it("shows a handler's failure and the service's output beside the message that caused them", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: failing\nservices:\n  - match: services/*.ts\nlimits:\n  handlerTimeout: 1s\n",
      "services/echo.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("echo");',
        'socket.on("message", async (ctx) => {',
        "  const text = ctx.text();",
        '  console.log("echo got " + text);',
        '  if (text === "boom") throw new Error("the boom handler broke");',
        '  if (text === "slow") return new Promise((r) => setTimeout(() => r("late"), 3000));',
        '  if (text === "chatty") for (let i = 0; i < 2000; i++) console.log("line " + i + " " + "x".repeat(3000));',
        '  if (text === "steady") for (let b = 0; b < 60; b++) {',
        '    for (let i = 0; i < 90; i++) console.log("steady " + b + " " + i);',
        "    await new Promise((r) => setTimeout(r, 100));",
        "  }",
        "  return text;",
        "});",
      ].join("\n"),
    });
    const app = await startApp(dir);
    const page = await openDashboard(app);
    const client = await connect(app.url("echo"));
    const [listed] = (await (await dashboardFetch(app, `/api/connections`)).json()) as { id: string }[];
    const id = listed?.id as string;

    client.ws.send("hello");
    expect((await client.next()).text).toBe("hello");
    await page.locator("#log-table tr[data-log='echo']", { hasText: "echo got hello" }).waitFor();

    client.ws.send("boom");
    // The failure row and the service's stack sit right above (newest first) the message that caused them.
    const failure = page.locator(`#log-table tr[data-error="message"][data-id="${id}"]`);
    await failure.waitFor();
    expect(await failure.textContent()).toContain('the message handler of websocket "echo" failed');
    const stack = page.locator("#log-table tr[data-log='echo']", { hasText: "the boom handler broke" });
    await stack.waitFor();
    expect(await stack.getAttribute("data-id")).toBe(id);
    // One row for the whole stack: the failure line and its "at ..." lines together.
    expect(await stack.textContent()).toMatch(/handler failed for connection .*the boom handler broke[\s\S]*\bat\b/);
    const order = await page
      .locator("#log-table tbody tr")
      .evaluateAll((rows) =>
        rows.map((r) => (r.dataset.error ? "error" : r.dataset.log ? "log" : (r.dataset.direction ?? r.dataset.event))),
      );
    const boomIn = await page
      .locator("#log-table tbody tr")
      .evaluateAll((rows) => rows.findIndex((r) => r.dataset.direction === "in" && r.textContent?.includes("boom")));
    // Just above the "boom" message: the rows it caused (the stack, the failure), in either order.
    expect(new Set(order.slice(boomIn - 2, boomIn))).toEqual(new Set(["error", "log"]));
    // What the handler printed that names no connection is in the log too, in the order it came.
    await page.locator("#log-table tr[data-log='echo']", { hasText: "echo got boom" }).waitFor();

    // A handler that does not answer in time: the failure says so, beside its message.
    client.ws.send("slow");
    const late = page.locator(`#log-table tr[data-error="message"][data-id="${id}"]`, { hasText: "did not answer" });
    await late.waitFor();
    expect(await late.textContent()).toContain('the message handler of service "echo" did not answer within 1 s');
    const lateOrder = await page
      .locator("#log-table tbody tr")
      .evaluateAll((rows) =>
        rows.map((r) =>
          r.dataset.error
            ? "error"
            : r.dataset.direction === "in" && r.textContent?.includes("slow")
              ? "slow"
              : "other",
        ),
      );
    expect(lateOrder[lateOrder.indexOf("slow") - 1]).toBe("error");

    // A service that prints 2000 lines of 3000 characters at once: the page gets a bounded part,
    // cut lines, and a count of the rest.
    client.ws.send("chatty");
    expect((await client.next()).text).toBe("chatty");
    const notShown = page.locator("#log-table tr", { hasText: /lines of service output not shown/ });
    await notShown.first().waitFor();
    await sleep(300);
    const shown = await page
      .locator("#log-table tr[data-log='echo'] pre")
      .evaluateAll((pres) =>
        pres.flatMap((p) => (p.textContent ?? "").split("\n")).filter((l) => l.startsWith("line ")),
      );
    expect(shown.length).toBeGreaterThan(0);
    expect(shown.length).toBeLessThan(2000);
    expect(Math.max(...shown.map((l) => l.length))).toBeLessThanOrEqual(2000);
    expect(await page.locator("#log-table tbody tr").count()).toBeLessThanOrEqual(500);

    // Output that keeps coming, each burst within the per-flush bound (200 lines a flush; bursts of
    // 90, so that two a loaded machine's late flush takes together still fit): the page keeps the
    // newest 5000 lines of output, not all 5400.
    client.ws.send("steady");
    // (It outlives the 1 s handler timeout; its output still counts.)
    await page.locator("#log-table tr[data-log='echo']", { hasText: "steady 59 89" }).waitFor({ timeout: 30000 });
    const kept = await page
      .locator("#log-table tr[data-log='echo'] pre")
      .evaluateAll((pres) => pres.reduce((n, p) => n + (p.textContent ?? "").split("\n").length, 0));
    expect(kept).toBeLessThanOrEqual(5000);
    expect(kept).toBeGreaterThan(4000);
    client.close();
    await page.close();
  }, 60000);

  it("clears its live state when run stops: says so, no connections, controls off", async () => {
    const app = await startChatWeb();
    const page = await openDashboard(app);
    const client = await connect(app.url("chat"));
    await client.next();
    await expect.poll(() => page.locator("#connection-table tbody tr").count()).toBe(1);
    expect(await page.locator("#send-form").getByRole("button", { name: "Send" }).isDisabled()).toBe(false);

    expect((await app.stop()).code).toBe(0);
    await page.locator("#live", { hasText: "run stopped" }).waitFor();
    expect(await page.locator("#connection-table tbody tr").count()).toBe(0);
    expect(await page.locator("#connection-count").textContent()).toBe("0");
    expect(await page.locator("#no-connections").isVisible()).toBe(true);
    expect(await page.locator("#sockets tbody td code").first().textContent()).toBe("not running");
    for (const name of ["List", "Save", "Delete"])
      expect(await page.getByRole("button", { name, exact: true }).isDisabled()).toBe(true);
    expect(await page.locator("#send-form").getByRole("button", { name: "Send" }).isDisabled()).toBe(true);
    // Try a socket: nothing to connect to.
    for (const id of ["#client-open", "#client-query", "#client-submit", "#client-close"])
      expect(await page.locator(id).isDisabled(), id).toBe(true);
    expect(await page.locator("#send-status").textContent()).toContain("run stopped");
    await page.close();
  }, 40000);

  it("lays out at 720 px and on a phone (390 px): no sideways scrolling, the main controls in view", async () => {
    const app = await startChatWeb();
    const client = await connect(`${app.url("chat")}/?name=${"a-rather-long-name".repeat(4)}`);
    await client.next();
    client.ws.send(JSON.stringify({ name: "ann", text: "y".repeat(300) }));
    await client.next();
    for (const width of [720, 390]) {
      const page = await browser.newPage({ viewport: { width, height: 800 } });
      page.on("pageerror", (e) => pageErrors.push(`dashboard at ${width} px: ${e.message}`));
      await page.goto(app.dashboardPage as string);
      await page.locator("#live", { hasText: "live" }).waitFor();
      await page.locator("#connection-table tbody tr").first().waitFor();
      client.ws.send(JSON.stringify({ name: "ann", text: `at ${width} px ${"z".repeat(200)}` }));
      await page
        .locator("#log-table tbody tr", { hasText: `at ${width} px` })
        .first()
        .waitFor();
      // A string: this file is type-checked without the DOM's types.
      const { scrollWidth, innerWidth } = (await page.evaluate(
        "({ scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth })",
      )) as { scrollWidth: number; innerWidth: number };
      expect(scrollWidth, `page width at ${width} px`).toBeLessThanOrEqual(innerWidth);
      const controls = [
        page.locator("#send-form").getByRole("button", { name: "Send" }),
        page.locator("#send-text"),
        page.locator("#send-to"),
        page.getByRole("button", { name: "List" }),
        page.getByRole("button", { name: "Save" }),
        page.locator("#client-query"),
        page.getByRole("button", { name: "Connect" }),
        page.locator("#client-text"),
        page.locator("#log-filter"),
        page.getByRole("button", { name: "Clear" }),
        page.locator("#connection-table tbody tr").first().getByRole("button", { name: "message" }),
        page.locator("#connection-table tbody tr").first().getByRole("button", { name: "close" }),
      ];
      for (const control of controls) {
        await control.scrollIntoViewIfNeeded();
        expect(await control.isVisible()).toBe(true);
        const box = await control.boundingBox();
        expect(box, `${control} at ${width} px`).not.toBeNull();
        // Whole, inside the window and not clipped by its cell.
        expect(
          box && box.x >= 0 && box.x + box.width <= width,
          `${control} at ${width} px: ${JSON.stringify(box)}`,
        ).toBe(true);
        const hit = await control.evaluate((node) => {
          // Scrolled to and hit-tested in one task: the page may grow above it meanwhile (the kv
          // browser lists a key a message stored), which would carry it out of the window.
          node.scrollIntoView({ block: "center", inline: "nearest" });
          const r = node.getBoundingClientRect();
          const top = node.ownerDocument.elementFromPoint(r.left + r.width - 2, r.top + r.height / 2);
          return top === node || node.contains(top);
        });
        expect(hit, `${control} at ${width} px is covered or clipped`).toBe(true);
      }
      await page.close();
    }
    client.close();
  }, 60000);

  it("restarts a service on a file change under --provider aws, as local run does", async () => {
    const echo = (tag: string) =>
      [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("echo");',
        'socket.on("message", (ctx) => {',
        `  console.log("${tag} got " + ctx.text());`,
        `  if (ctx.text() === "boom") throw new Error("${tag} broke");`,
        `  return "${tag} " + ctx.text();`,
        "});",
      ].join("\n");
    const dir = writeProject({
      "nitric-like.yaml": "name: hot\nservices:\n  - match: services/*.ts\n",
      "services/echo.ts": echo("v1"),
    });
    const app = await startApp(dir, ["--provider", "aws"]);
    const client = await connect(app.url("echo"));
    client.ws.send("hi");
    expect((await client.next()).text).toBe("v1 hi");

    writeFileSync(join(dir, "services/echo.ts"), echo("v2"));
    await app.waitFor(/services\/echo\.ts changed: restarting service "echo"/);
    await app.waitFor(/service "echo" restarted/);
    // The connection stays (API Gateway holds it, not the function), and the new code answers;
    // what it prints shows in the dashboard's log too.
    const page = await openDashboard(app);
    client.ws.send("again");
    expect((await client.next()).text).toBe("v2 again");
    await page.locator("#log-table tr[data-log='echo']", { hasText: "v2 got again" }).waitFor();
    // A handler that throws inside its function: its report sits beside the message.
    const [listed] = (await (await dashboardFetch(app, `/api/connections`)).json()) as { id: string }[];
    client.ws.send("boom");
    const report = page.locator(`#log-table tr[data-log='echo'][data-id="${listed?.id}"]`, { hasText: "v2 broke" });
    await report.waitFor();
    expect(
      await page
        .locator("#log-table tbody tr")
        .evaluateAll(
          (rows) =>
            rows.findIndex((r) => r.dataset.direction === "in" && r.textContent?.includes("boom")) -
            rows.findIndex((r) => r.textContent?.includes("v2 broke")),
        ),
    ).toBe(1);
    await page.close();

    // A change that does not compile keeps the running version, and says why.
    writeFileSync(join(dir, "services/echo.ts"), `${echo("v3")}\nconst = ;`);
    await app.waitFor(/echo\.ts:\d+/);
    client.ws.send("still");
    expect((await client.next()).text).toBe("v2 still");
    client.close();
  }, 60000);

  for (const provider of ["local", "aws"] as const) {
    it(`shows a service file added while it runs, its socket, store and live connections, and each service's state, without a reload (${provider})`, async () => {
      const dir = writeProject({
        "nitric-like.yaml": "name: grows\nservices:\n  - match: services/*.ts\n",
        "services/first.ts": [
          'import { websocket } from "@nitric-like/sdk";',
          'const socket = websocket("first");',
          'socket.on("connect", () => {});',
          'socket.on("disconnect", () => {});',
          'socket.on("message", (ctx) => "first " + ctx.text());',
        ].join("\n"),
      });
      const app = await startApp(dir, provider === "aws" ? ["--provider", "aws"] : []);
      const page = await openDashboard(app);
      await page.locator("#sockets tbody tr", { hasText: "first" }).waitFor();
      writeFileSync(
        join(dir, "services/scores.ts"),
        [
          'import { kv, websocket } from "@nitric-like/sdk";',
          'const socket = websocket("scores");',
          'const board = kv<{ n: number }>("board").allow("get", "set");',
          'socket.on("connect", () => {});',
          'socket.on("disconnect", () => {});',
          'socket.on("message", async (ctx) => { await board.set("top", { n: Number(ctx.text()) }); return "kept"; });',
        ].join("\n"),
      );
      await app.waitFor(/^websocket scores ws:/m, 30000);
      await page.locator("#sockets tbody tr", { hasText: "scores" }).waitFor();
      await page.locator("#stores tbody tr", { hasText: "board" }).waitFor();
      expect(await page.locator("#kv-store option").allTextContents()).toContain("board");
      // Its connections and their messages show, and its store is browsed, on the page as it is.
      const client = await connect(app.url("scores"));
      await page.locator("#connection-table tbody tr", { hasText: "scores" }).waitFor();
      client.ws.send("42");
      expect((await client.next()).text).toBe("kept");
      await page.locator("#log-table tr[data-direction='in']", { hasText: "42" }).waitFor();
      await page.locator("#kv-store").selectOption("board");
      await page.getByRole("button", { name: "List" }).click();
      await page.locator("#kv-keys li", { hasText: "top" }).waitFor();
      client.close();
      // Each service and where it is.
      const running = provider === "aws" ? "in its function" : "running";
      for (const name of ["first", "scores"])
        await page.locator(`#services tr[data-service="${name}"]`, { hasText: running }).waitFor();
      if (provider === "aws") {
        // How many copies of its function run, as Lambda runs one per event in flight.
        const detail = page.locator('#services tr[data-service="scores"] .detail');
        await detail.waitFor();
        expect(await detail.textContent()).toMatch(/^[1-8] execution environments?, (idle|[1-8] running an event)$/);
      }
      if (provider === "local") {
        // One that fails as it loads: waiting, with why; saved fixed, running.
        const broken = join(dir, "services/broken.ts");
        writeFileSync(broken, 'throw new Error("no config for broken");\n');
        const row = page.locator('#services tr[data-service="broken"][data-state="waiting"]');
        await row.waitFor();
        expect(await row.locator(".reason").textContent()).toMatch(
          /^service "broken" \(services\/broken\.ts:1\) failed .*: no config for broken$/,
        );
        writeFileSync(
          broken,
          'import { websocket } from "@nitric-like/sdk";\nconst s = websocket("broken");\ns.on("connect", () => {});\ns.on("disconnect", () => {});\ns.on("message", () => "fixed");\n',
        );
        await page
          .locator('#services tr[data-service="broken"][data-state="started"]', { hasText: "running" })
          .waitFor();
      }
      await page.close();
    }, 90000);
  }

  it("shows a failed service's reason of many lines as lines, as text, wrapped at the window's width (390 px)", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: reasons\nservices:\n  - match: services/*.ts\n",
      "services/first.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("first");',
        'socket.on("message", (ctx) => "first " + ctx.text());',
      ].join("\n"),
    });
    const app = await startApp(dir);
    const page = await browser.newPage({ viewport: { width: 390, height: 800 } });
    page.on("pageerror", (e) => pageErrors.push(`dashboard: ${e.message}`));
    await page.goto(app.dashboardPage as string);
    await page.locator("#live", { hasText: "live" }).waitFor();
    // A thrown message of several lines, one of them markup and one far wider than the window;
    // and a service that logs its problem and exits, said by its last lines of output.
    writeFileSync(
      join(dir, "services/multi.ts"),
      `throw new Error("bad config:\\n  <b>PORT</b> must be a number\\n  HOST ${"h".repeat(400)}\\n  last");\n`,
    );
    writeFileSync(
      join(dir, "services/quiet.ts"),
      'for (let i = 0; i < 12; i++) console.error("quiet line " + i + " <i>x</i>");\nprocess.exit(3);\n',
    );
    const reason = (name: string) => page.locator(`#services tr[data-service="${name}"][data-state="waiting"] .reason`);
    await reason("multi").waitFor({ timeout: 30000 });
    await reason("quiet").waitFor({ timeout: 30000 });
    // As run printed it: its lines stay lines, as text (no element made of the markup).
    const multi = (await reason("multi").innerText()).split("\n");
    expect(multi[0]).toMatch(/^service "multi" \(services\/multi\.ts:1\) failed .*: bad config:$/);
    expect(multi.slice(1).map((l) => l.trim())).toEqual([
      "<b>PORT</b> must be a number",
      `HOST ${"h".repeat(400)}`,
      "last",
    ]);
    const quiet = (await reason("quiet").innerText()).split("\n");
    expect(quiet[0]).toMatch(
      /^service "quiet" \(services\/quiet\.ts\) failed .*: it exited with code 3; its last output:$/,
    );
    expect(quiet.slice(1).map((l) => l.trim())).toEqual([
      "... (2 lines before)",
      ...Array.from({ length: 10 }, (_, i) => `quiet line ${i + 2} <i>x</i>`),
    ]);
    expect(await page.locator("#services b, #services i").count()).toBe(0);
    // The wide line wraps inside the window: the page does not scroll sideways.
    const box = await reason("multi").boundingBox();
    expect(box && box.x + box.width <= 390, JSON.stringify(box)).toBe(true);
    const { scrollWidth, innerWidth } = (await page.evaluate(
      "({ scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth })",
    )) as { scrollWidth: number; innerWidth: number };
    expect(scrollWidth).toBeLessThanOrEqual(innerWidth);
    await page.close();
  }, 90000);

  it("shows a service that crashed as restarting after a crash, with when, then as a crash loop once run gave up", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: crashing\nservices:\n  - match: services/*.ts\n",
      "services/chat.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("chat");',
        'socket.on("message", (ctx) => "echo " + ctx.text());',
        // Every copy starts, then crashes with nothing in flight: backoff, then a crash loop.
        'if (process.env.NITRIC_ENVIRONMENT === "run") setTimeout(() => process.exit(3), 300);',
      ].join("\n"),
    });
    const app = await startApp(dir);
    const page = await openDashboard(app);
    const restarting = page.locator('#services tr[data-service="chat"][data-state="restarting"]');
    await restarting.waitFor({ timeout: 20000 });
    expect(await restarting.locator("span").first().textContent()).toBe("↻ restarting after a crash");
    expect(await restarting.locator(".restart-at").textContent()).toMatch(/^new copy at \d\d:\d\d:\d\d\.\d{3}$/);
    expect(await restarting.locator(".reason").textContent()).toBe('service "chat" exited with code 3');
    const looped = page.locator('#services tr[data-service="chat"][data-state="waiting"]');
    await looped.waitFor({ timeout: 30000 });
    expect(await looped.locator("span").first().textContent()).toBe("✕ crash loop: waiting for a fix");
    expect(await looped.locator(".reason").textContent()).toBe('service "chat" crashed 5 times in 30 s');
    expect(await looped.locator(".restart-at").count()).toBe(0);
    await page.close();
  }, 60000);

  for (const provider of ["local", "aws"]) {
    it(`lists each secret with its newest version or how to give it one, follows a secret put, and never shows a value (${provider})`, async () => {
      const dir = writeProject({
        "nitric-like.yaml": "name: vaulted\nservices:\n  - match: services/*.ts\n",
        "services/door.ts": [
          'import { secret, websocket } from "@nitric-like/sdk";',
          'secret("motd").allow("access");',
          'secret("api-key").allow("access", "put");',
          'const socket = websocket("door");',
          'socket.on("connect", () => {});',
          'socket.on("disconnect", () => {});',
          'socket.on("message", () => {});',
        ].join("\n"),
      });
      const app = await startApp(dir, ["--provider", provider]);
      const page = await openDashboard(app);
      const motd = page.locator('#secrets tr[data-secret="motd"]');
      await expect.poll(() => motd.textContent()).toContain("no value yet: nitric-like secret put motd");
      expect(await page.locator('#secrets tr[data-secret="api-key"]').textContent()).toContain("door");

      const put = await runCli(["secret", "put", "motd", dir], { input: "the-value-itself\n" });
      expect(put.code).toBe(0);
      const version = put.stdout.trim();
      // Stored by another process: the open page follows within a few seconds.
      await expect.poll(() => motd.textContent(), { timeout: 10000 }).toContain(version);
      expect(await page.content()).not.toContain("the-value-itself");
      const state = await (await dashboardFetch(app, `/api/state`)).text();
      expect(state).toContain(version);
      expect(state).not.toContain("the-value-itself");
      await page.close();
    }, 60000);
  }

  it("is off with --no-dashboard, and a taken --dashboard-port is an error naming the fix", async () => {
    const quiet = await startChatWeb(["--no-dashboard"]);
    expect(quiet.stdout).not.toMatch(/^dashboard /m);

    const taken = createServer().listen(0, "127.0.0.1");
    await new Promise((r) => taken.once("listening", r));
    const port = (taken.address() as { port: number }).port;
    try {
      const { code, stderr } = await runCli(["run", quiet.dir, "--random-ports", "--dashboard-port", String(port)]);
      expect(code).toBe(1);
      expect(stderr).toContain(`dashboard: port ${port} is already in use; pick another with --dashboard-port`);
    } finally {
      taken.close();
    }
    const bad = await runCli(["run", quiet.dir, "--dashboard-port", "http"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('--dashboard-port must be a port number (0 to 65535, 0 for a free one), got "http"');
  }, 40000);
});

describe("examples/chat-web", () => {
  it("serves its page with the socket URL in it, and two tabs chat", async () => {
    const app = await startChatWeb();
    const html = await (await fetch(chatPage(app))).text();
    expect(html).toContain(`<meta name="socket-url" content="${app.url("chat")}">`);

    const context = await browser.newContext();
    const [one, two] = [await context.newPage(), await context.newPage()];
    for (const tab of [one, two]) {
      tab.on("pageerror", (e) => pageErrors.push(`chat page: ${e.message}`));
      await tab.goto(chatPage(app));
      await tab.locator("#status", { hasText: "connected" }).waitFor();
    }
    await one.locator("#name").fill("ann");
    await one.locator("#text").fill("hello from tab one");
    await one.locator("#text").press("Enter");
    await two.locator(".line", { hasText: "hello from tab one" }).waitFor();
    expect(await two.locator(".line .who").first().textContent()).toMatch(/^ann · /);
    await one.locator(".line.mine", { hasText: "hello from tab one" }).waitFor();

    await two.locator("#text").fill("hi ann, tab two here");
    await two.getByRole("button", { name: "Send" }).click();
    await one.locator(".line:not(.mine)", { hasText: "hi ann, tab two here" }).waitFor();

    // A tab opened later gets what was said.
    const three = await context.newPage();
    await three.goto(chatPage(app));
    await expect
      .poll(() => three.locator(".line .text").allTextContents())
      .toEqual(["hello from tab one", "hi ann, tab two here"]);
    await context.close();
  }, 40000);
});
