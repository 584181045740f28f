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

  it("agrees with JSON.parse on every object it is given: the route is the action property when a string that names one", () => {
    const samples = [
      { action: "join" },
      { action: "say", text: "x".repeat(5000) },
      { action: "nope" },
      { action: 1 },
      { actions: "join" },
      { nested: { action: "join" } },
      { action: "chat.say", action2: "join" },
    ];
    for (const sample of samples) {
      const text = JSON.stringify(sample);
      const action = (JSON.parse(text) as { action?: unknown }).action;
      const expected = typeof action === "string" && routes.has(action) ? action : undefined;
      expect(selectRoute(text, routes)).toBe(expected);
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

  it.each(["type", "kind", "_t", "op2", "T"])("takes %j, and reads it back from the expression it makes", (name) => {
    expect(routeByProblem("s", name)).toBeUndefined();
    expect(routeByOf(routeSelectionExpression(name))).toBe(name);
  });

  it("reads no routeBy from an expression nitric-like does not write", () => {
    for (const expression of [
      "$request.body.a.b",
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

  it.each(["", "2x", "a-b", "a.b", "body.type", "$type", " type", "x".repeat(65), 5, undefined])(
    "refuses %j, saying the rule",
    (name) => {
      expect(routeByProblem("s", name)).toMatch(
        /^websocket\("s", \{ routeBy: .* \}\): routeBy names the top-level JSON property that selects a message's route/,
      );
    },
  );

  it("reads no property from an expression nitric-like does not write", () => {
    for (const e of [
      // API Gateway's braced form, which nitric-like never writes.
      ["$", "{request.body.action}"].join(""),
      "$request.body.a.b",
      "$request.body",
      "$request.body.action ",
      7,
      undefined,
    ])
      expect(routeByOf(e)).toBeUndefined();
    expect(routeSelectionExpression(undefined)).toBe("$request.body.action");
  });
});
