// The rooms example in a real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core), against the project started by the test kit: pages with valid tokens chat in
// a room, a page in another room hears nothing, a bad token is refused, and the member list follows
// who leaves.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { type App, ConnectRefusedError, startApp, stopAll } from "@nitric-like/testing";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";

const project = fileURLToPath(new URL("..", import.meta.url));
const CHROMIUM = "/usr/bin/chromium";

let browser: Browser;
const pageErrors: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: install it with "apt-get install -y chromium" (.ci/run does)`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  });
  process.env.ROOMS_WEB_PORT = "0"; // the page on a free port
});
afterEach(async () => {
  expect(pageErrors.splice(0)).toEqual([]);
  await stopAll();
});
afterAll(async () => {
  await browser?.close();
});

async function startRooms(): Promise<{ app: App; page: string }> {
  const app = await startApp(project);
  await app.waitForLog(/rooms page http:\/\/127\.0\.0\.1:\d+/);
  const page = /rooms page (http:\/\/\S+)/.exec(app.logs)?.[1];
  if (!page) throw new Error(`no rooms page in the output:\n${app.logs}`);
  return { app, page };
}

/** Opens the page in a context of its own and enters with a name, token and room. */
async function enter(url: string, name: string, token: string, room: string): Promise<Page> {
  const page = await (await browser.newContext()).newPage();
  page.on("pageerror", (e) => pageErrors.push(`${name}: ${e.message}`));
  await page.goto(url);
  await page.locator("#name").fill(name);
  await page.locator("#token").fill(token);
  await page.locator("#room").fill(room);
  await page.locator("#enter").click();
  return page;
}

async function entered(page: Page, room: string): Promise<void> {
  await page.locator("#status", { hasText: "connected as" }).waitFor();
  await page.locator("#room-title", { hasText: `members of ${room}` }).waitFor();
}

async function say(page: Page, text: string): Promise<void> {
  await page.locator("#text").fill(text);
  await page.locator("#text").press("Enter");
}

const members = (page: Page) => page.locator("#members li").allTextContents();

it("chats in a room, keeps other rooms out, refuses a bad token and updates the members", async () => {
  const { app, page: url } = await startRooms();
  const html = await (await fetch(url)).text();
  expect(html).toContain(`<meta name="socket-url" content="${app.url("rooms")}">`);

  const ann = await enter(url, "Ann", "t-ann", "blue");
  const bo = await enter(url, "", "t-bo", "blue"); // no name: the identity's user
  const cy = await enter(url, "Cy", "t-cy", "red");
  await Promise.all([entered(ann, "blue"), entered(bo, "blue"), entered(cy, "red")]);
  expect(await bo.locator("#status").textContent()).toBe("connected as bo (bo)");
  await expect.poll(() => members(ann)).toEqual(["Ann", "bo"]);
  await expect.poll(() => members(bo)).toEqual(["Ann", "bo"]);
  expect(await members(cy)).toEqual(["Cy"]);

  await say(ann, "hello blue room");
  await bo.locator(".line:not(.mine)", { hasText: "hello blue room" }).waitFor();
  expect(await bo.locator(".line .who").last().textContent()).toMatch(/^Ann · /);
  await ann.locator(".line.mine", { hasText: "hello blue room" }).waitFor(); // its own, once
  await say(bo, "hi Ann");
  await ann.locator(".line:not(.mine)", { hasText: "hi Ann" }).waitFor();
  // Cy, in red, heard nothing; and what Cy says stays in red.
  await say(cy, "anyone in red?");
  await cy.locator(".line.mine", { hasText: "anyone in red?" }).waitFor();
  expect(await cy.locator(".line").allTextContents()).toEqual([expect.stringContaining("anyone in red?")]);
  expect(await ann.locator(".line .text").allTextContents()).toEqual(["hello blue room", "hi Ann"]);
  expect(await bo.locator(".line .text").allTextContents()).toEqual(["hello blue room", "hi Ann"]);

  // A token the authorizer does not know: the page shows the refusal; a client that can read the
  // answer gets the status and the reason.
  const eve = await enter(url, "Eve", "t-eve", "blue");
  await eve.locator("#status.refused", { hasText: "refused" }).waitFor();
  const refused = await app.connect({ protocols: ["token.t-eve", "rooms"] }).catch((e: unknown) => e);
  expect(refused).toBeInstanceOf(ConnectRefusedError);
  expect((refused as ConnectRefusedError).status).toBe(403);
  expect((refused as ConnectRefusedError).body).toBe('unknown token "t-eve"');
  const none = await app.connect({ protocols: ["rooms"] }).catch((e: unknown) => e);
  expect([(none as ConnectRefusedError).status, (none as ConnectRefusedError).body]).toEqual([
    401,
    "a token is required (try t-ann, t-bo or t-cy)",
  ]);
  // Clients that can set the query may send the token there; no subprotocol is echoed then.
  const viaQuery = await app.connect({ query: { token: "t-cy", name: "cli" } });
  await viaQuery.expectMessage({ type: "hello", user: "cy", name: "cli" });
  expect(viaQuery.protocol).toBe("");
  // Each action has its route; what selects none (not JSON, another action) reaches on("message").
  const unknown = {
    type: "error",
    message: 'rooms: unknown message; send {"action":"join","room":"..."} or {"action":"say","text":"..."}',
  };
  viaQuery.send("hello?");
  await viaQuery.expectMessage(unknown);
  viaQuery.send({ action: "leave" });
  await viaQuery.expectMessage(unknown);
  viaQuery.send({ action: "join" });
  await viaQuery.expectMessage({ type: "error", message: 'rooms: join needs a room, {"action":"join","room":"..."}' });
  await viaQuery.close();
  expect(await members(ann)).toEqual(["Ann", "bo"]);

  // Cy moves to blue with /join: both lists grow; then Bo closes the page and both shrink.
  await say(cy, "/join blue");
  await entered(cy, "blue");
  await expect.poll(() => members(ann)).toEqual(["Ann", "bo", "Cy"]);
  await expect.poll(() => members(cy)).toEqual(["Ann", "bo", "Cy"]);
  await bo.context().close();
  await expect.poll(() => members(ann)).toEqual(["Ann", "Cy"]);
  await expect.poll(() => members(cy)).toEqual(["Ann", "Cy"]);
  await say(cy, "bo left");
  await ann.locator(".line:not(.mine)", { hasText: "bo left" }).waitFor();

  for (const page of [ann, cy, eve]) await page.context().close();
}, 30000);

it("keeps a client that sends its joins without waiting for the answers in one room", async () => {
  const { app } = await startRooms();
  const ann = await app.connect({ query: { token: "t-ann" } });
  const bo = await app.connect({ query: { token: "t-bo" } });
  await ann.expectMessage({ type: "hello" });
  await bo.expectMessage({ type: "hello" });
  // Handled side by side, as they arrive: each is answered, joined or, past 100 rooms at once, why
  // not (member lists of the rooms it passes through come in between).
  for (let i = 0; i < 120; i++) ann.send({ action: "join", room: `r${i}` });
  for (let answered = 0; answered < 120; ) {
    const { text } = await ann.next();
    if (text.includes('"type":"joined"') || text.includes("100 rooms, the most")) answered++;
    else expect(text).toContain('"type":"members"');
  }
  ann.send({ action: "join", room: "blue" });
  for (let text = ""; !text.includes('"room":"blue"'); ) ({ text } = await ann.next());
  for (const room of ["r0", "r60", "r119"]) {
    bo.send({ action: "join", room });
    await bo.expectMessage({ type: "joined", room });
    await bo.expectMessage({ type: "members", room, members: [{ name: "bo" }] });
  }
}, 30000);
