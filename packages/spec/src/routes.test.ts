import { describe, expect, it } from "vitest";
import { routeByOf, routeByProblem, routeNameProblem, routeSelectionExpression, selectRoute } from "./routes.js";

describe("selectRoute", () => {
  const routes = new Set(["join", "say", "chat.say"]);
  it.each([
    ['{"action":"join","room":"lobby"}', "join"],
    [' \n\t{"action":"say"}', "say"],
    ['{"room":"x","action":"chat.say"}', "chat.say"],
    ['{"\\u0061ction":"join"}', "join"],
    ['{"action":"\\u006aoin"}', "join"],
    ['{"action":"join","action":"say"}', "say"],
  ])("selects the route %j names: %s", (text, route) => {
    expect(selectRoute(text, routes)).toBe(route);
  });

  it.each([
    "join",
    '"join"',
    '["join"]',
    '{"action":"leave"}',
    '{"action":"Join"}',
    '{"action":true}',
    '{"action":["join"]}',
    '{"action":{"name":"join"}}',
    '{"data":{"action":"join"}}',
    '{"action":"join"',
    '{"action":"join"} trailing',
    "{}",
    "",
    '{"__proto__":{"action":"join"}}',
  ])("selects none for %j", (text) => {
    expect(selectRoute(text, routes)).toBeUndefined();
  });

  it("selects none on a socket without routes, whatever the message", () => {
    expect(selectRoute('{"action":"join"}', new Set())).toBeUndefined();
  });

  it("agrees with JSON.parse on every object it is given: the route is the routeBy path's property when a string that names one", () => {
    const samples = [
      { action: "join" },
      { action: "say", text: "x".repeat(5000) },
      { action: "nope" },
      { action: 1 },
      { actions: "join" },
      { nested: { action: "join" } },
      { action: "chat.say", action2: "join" },
      { meta: { type: "join" } },
      { meta: { type: "say", id: 1 }, type: "join", text: "x".repeat(5000) },
      { meta: { type: 1 } },
      { meta: { type: ["join"] } },
      { meta: [{ type: "join" }] },
      { meta: "join" },
      { meta: null },
      { meta: { meta: { type: "join" } } },
      { data: { meta: { type: "chat.say" } } },
      { type: "join" },
      { a: { b: { c: { d: "join" } } } },
      { a: { b: { c: { d: { e: "join" } } } } },
    ];
    /** What JSON.parse reads at the path: own properties of objects, the last a string. */
    const parsed = (text: string, routeBy: string): unknown => {
      let value: unknown = JSON.parse(text);
      for (const name of routeBy.split(".")) {
        if (value === null || typeof value !== "object" || Array.isArray(value)) return undefined;
        value = Object.hasOwn(value, name) ? (value as Record<string, unknown>)[name] : undefined;
      }
      return value;
    };
    for (const routeBy of ["action", "type", "meta.type", "meta.meta.type", "data.meta.type", "a.b.c.d"]) {
      for (const sample of samples) {
        const text = JSON.stringify(sample);
        const action = parsed(text, routeBy);
        const expected = typeof action === "string" && routes.has(action) ? action : undefined;
        expect(selectRoute(text, routes, routeBy), `${routeBy} of ${text.slice(0, 60)}`).toBe(expected);
      }
    }
  });
});

describe("routeNameProblem", () => {
  it.each(["join", "Join", "chat.say", "room:enter", "a_b-c", "a".repeat(64)])("takes %j", (name) => {
    expect(routeNameProblem("s", name)).toBeUndefined();
  });
  it.each(["", "$default", "$connect", "1st", "-x", "with space", "é", "a/b", "true", "false", "null", "a".repeat(65)])(
    "refuses %j",
    (name) => {
      expect(routeNameProblem("s", name)).toMatch(/^websocket\("s"\)\.route\(/);
    },
  );
  it("refuses a name that is not a string, and cuts a long one in its message", () => {
    expect(routeNameProblem("s", 5)).toBe(
      'websocket("s").route(5): a route needs a name, the "action" its messages carry, such as "join"',
    );
    expect(routeNameProblem("s", "x".repeat(500))).toBe(
      `websocket("s").route("${"x".repeat(80)}"): a route name is at most 64 characters; this one has 500`,
    );
  });
});

describe("routeBy", () => {
  it("selects by the socket's property instead of action", () => {
    const routes = new Set(["join"]);
    expect(selectRoute('{"type":"join"}', routes, "type")).toBe("join");
    expect(selectRoute('{"action":"join"}', routes, "type")).toBeUndefined();
    expect(selectRoute('{"\\u0074ype":"join"}', routes, "type")).toBe("join");
  });

  it("selects by a dotted path into the message, as API Gateway's $request.body.meta.type does", () => {
    const routes = new Set(["join", "say"]);
    expect(selectRoute('{"meta":{"type":"join"},"room":"lobby"}', routes, "meta.type")).toBe("join");
    expect(selectRoute('{"meta":{"\\u0074ype":"say"}}', routes, "meta.type")).toBe("say");
    for (const text of [
      '{"type":"join"}',
      '{"meta":"join"}',
      '{"meta":{"type":true}}',
      '{"meta":{"type":{"name":"join"}}}',
      '{"meta":[{"type":"join"}]}',
      '{"meta":{"type":"join"},"meta":{}}',
      '[{"meta":{"type":"join"}}]',
      '{"meta":{"type":"join"}',
      "meta.type",
      '{"meta.type":"join"}',
    ])
      expect(selectRoute(text, routes, "meta.type"), text).toBeUndefined();
  });

  it("reads a path's names as the message's own properties, never the prototype's (__proto__, constructor)", () => {
    // A reader that looked names up on parsed objects would find Object.prototype.constructor.name
    // ("Object") in any message, and select the route "Object".
    const routes = new Set(["Object", "join", "toString"]);
    // Each message has the key "name" somewhere, so it is read, not passed over unread.
    for (const text of ['{"name":"join"}', '{"meta":{},"name":1}', '{"__proto__":{},"x":{"name":"join"}}'])
      for (const routeBy of ["constructor.name", "meta.constructor.name", "__proto__.constructor.name"])
        expect(selectRoute(text, routes, routeBy), `${routeBy} of ${text}`).toBeUndefined();
    expect(selectRoute('{"constructor":{"name":"join"}}', routes, "constructor.name")).toBe("join");
    expect(selectRoute('{"__proto__":{"type":"join"}}', routes, "__proto__.type")).toBe("join");
    expect(selectRoute('{"__proto__":{"type":"join"}}', routes, "type")).toBeUndefined();
  });

  it.each([
    "type",
    "kind",
    "_t",
    "op2",
    "T",
    "meta.type",
    "a.b.c.d",
    "__proto__.type",
    "constructor.name",
    "x".repeat(64),
  ])("takes %j, and reads it back from the expression it makes", (name) => {
    expect(routeByProblem("s", name)).toBeUndefined();
    expect(routeByOf(routeSelectionExpression(name))).toBe(name);
  });

  it("reads no routeBy from an expression nitric-like does not write", () => {
    for (const expression of [
      "$request.body.a.b.c.d.e",
      "$request.body.a..b",
      "$request.body.a.",
      "$request.body.a[0]",
      "$request.body.",
      "$request.header.action",
      " $request.body.action",
      `$request.body.${"x".repeat(65)}`,
      "$request.body.2x",
      5,
      undefined,
    ])
      expect(routeByOf(expression), String(expression)).toBeUndefined();
  });

  it.each([
    "",
    "2x",
    "a-b",
    "$type",
    " type",
    "x".repeat(65),
    "a..b",
    ".type",
    "meta.",
    "meta.2x",
    "meta[0]",
    "meta.type-x",
    "meta/type",
    "a.b.c.d.e",
    `${"x".repeat(32)}.${"y".repeat(32)}`,
    "$request.body.type",
    5,
    undefined,
  ])("refuses %j, saying the rule", (name) => {
    expect(routeByProblem("s", name)).toMatch(
      /^websocket\("s", \{ routeBy: .* \}\): routeBy names the JSON property that selects a message's route, "type" for \{"type":"join"\} or a path such as "meta.type"/,
    );
  });

  it("says the whole rule when it refuses a routeBy", () => {
    expect(routeByProblem("s", "meta..type")).toBe(
      'websocket("s", { routeBy: "meta..type" }): routeBy names the JSON property that selects a message\'s route, "type" for {"type":"join"} or a path such as "meta.type" for {"meta":{"type":"join"}} (default "action"): 1 to 4 names joined by ".", each a letter or "_" then letters, digits or "_", at most 64 characters in all',
    );
  });

  it("reads no property from an expression nitric-like does not write", () => {
    for (const e of [
      // API Gateway's braced form, which nitric-like never writes.
      ["$", "{request.body.action}"].join(""),
      "$request.body.a..b",
      "$request.body",
      "$request.body.action ",
      7,
      undefined,
    ])
      expect(routeByOf(e)).toBeUndefined();
    expect(routeSelectionExpression(undefined)).toBe("$request.body.action");
  });
});
