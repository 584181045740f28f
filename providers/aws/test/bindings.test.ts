// The function's bindings, read from the environment the template gives it.
import { describe, expect, it } from "vitest";
import { readBindings } from "../src/runtime/bindings.js";

describe("readBindings", () => {
  const env = (timeout?: string) => ({
    NITRIC_LIKE_SERVICE: "chat",
    ...(timeout === undefined ? {} : { NITRIC_LIKE_HANDLER_TIMEOUT_MS: timeout }),
  });

  it("keeps the handler timeout under API Gateway's 29 s integration timeout, however it was set", () => {
    expect(readBindings(env()).handlerTimeoutMs).toBe(5000);
    expect(readBindings(env("20000")).handlerTimeoutMs).toBe(20_000);
    // Past what API Gateway waits for: a second under it, so the runtime times out first.
    expect(readBindings(env("45000")).handlerTimeoutMs).toBe(28_000);
    expect(readBindings(env("soon")).handlerTimeoutMs).toBe(5000);
    expect(readBindings(env("-1")).handlerTimeoutMs).toBe(5000);
  });

  it("names the variable a function needs when it is missing", () => {
    expect(() => readBindings({})).toThrow(/NITRIC_LIKE_SERVICE is not set/);
  });

  it("reads NITRIC_LIKE_SECRETS as a map of secret names to ARNs, names from the template kept as data", () => {
    const arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ApiKeySecret-AbC12dEf3GhI-x1y2z3";
    const bindings = readBindings({
      NITRIC_LIKE_SERVICE: "chat",
      // Raw JSON: an object literal's `__proto__` would set the prototype, not a property.
      NITRIC_LIKE_SECRETS: `{"api-key":"${arn}","__proto__":"arn:proto","constructor":"arn:c"}`,
    });
    expect(bindings.secrets).toBeInstanceOf(Map);
    expect([...bindings.secrets]).toEqual([
      ["api-key", arn],
      ["__proto__", "arn:proto"],
      ["constructor", "arn:c"],
    ]);
    expect(readBindings({ NITRIC_LIKE_SERVICE: "chat" }).secrets.size).toBe(0);
    expect(readBindings({ NITRIC_LIKE_SERVICE: "chat" }).secrets.has("constructor")).toBe(false);
  });

  it("reads each socket's message routes from NITRIC_LIKE_WEBSOCKETS (none when absent), and refuses what no route is named", () => {
    const socket = (extra: object) =>
      JSON.stringify({ chat: { apiId: "a", url: "wss://a/live", endpoint: "https://a/live", events: [], ...extra } });
    const read = (extra: object) =>
      readBindings({ NITRIC_LIKE_SERVICE: "chat", NITRIC_LIKE_WEBSOCKETS: socket(extra) });
    expect(read({}).websockets.chat?.routes).toEqual([]);
    expect(read({ routes: ["join", "Join", "chat.say"] }).websockets.chat?.routes).toEqual([
      "join",
      "Join",
      "chat.say",
    ]);
    expect(() => read({ routes: ["$default"] })).toThrow(
      /NITRIC_LIKE_WEBSOCKETS\["chat"\]\.routes is not valid \(.*a route name starts with a letter.*\); it is set by the template, so build and deploy again/,
    );
    expect(() => read({ routes: "join" })).toThrow(/routes is not valid \(not an array of route names\)/);
  });

  it("reads the function that runs a socket's disconnect from NITRIC_LIKE_WEBSOCKETS (none when absent), and refuses what names no function", () => {
    const read = (extra: object) =>
      readBindings({
        NITRIC_LIKE_SERVICE: "gate",
        NITRIC_LIKE_WEBSOCKETS: JSON.stringify({
          chat: { apiId: "a", url: "wss://a/live", endpoint: "https://a/live", events: ["connect"], ...extra },
        }),
      });
    expect(read({}).websockets.chat?.disconnectFunction).toBeUndefined();
    expect(read({ disconnect: "app-KeeperFunction-Ab12" }).websockets.chat?.disconnectFunction).toBe(
      "app-KeeperFunction-Ab12",
    );
    for (const bad of ["", "../other", "a b", 7, ["x"]]) {
      expect(() => read({ disconnect: bad })).toThrow(
        /^nitric-like runtime: NITRIC_LIKE_WEBSOCKETS\["chat"\]\.disconnect is .*, not a Lambda function's name; it is set by the template, so build and deploy again$/,
      );
    }
  });

  it("reads NITRIC_LIKE_DECLARED as the service's file and its resources with their permissions, names kept as data; absent, nothing is checked", () => {
    const read = (declared: string) => readBindings({ NITRIC_LIKE_SERVICE: "chat", NITRIC_LIKE_DECLARED: declared });
    expect(
      read(
        '{"file":"services/chat.ts","resources":[["websocket","socket",["manage"]],["kv","__proto__",["get","set"]],["secret","constructor",[]]]}',
      ).declared,
    ).toEqual({
      file: "services/chat.ts",
      resources: [
        { kind: "websocket", name: "socket", permissions: ["manage"] },
        { kind: "kv", name: "__proto__", permissions: ["get", "set"] },
        { kind: "secret", name: "constructor", permissions: [] },
      ],
    });
    expect(readBindings({ NITRIC_LIKE_SERVICE: "chat" }).declared).toBeUndefined();
    for (const [bad, why] of [
      ['{"resources":[]}', "no file"],
      ['{"file":"services/chat.ts","resources":{}}', "resources is not an array"],
      ['{"file":"f","resources":[["kv","x"]]}', "is not \\[kind, name, permissions\\]"],
      ['{"file":"f","resources":[["toString","x",[]]]}', "names no websocket, kv store or secret"],
      ['{"file":"f","resources":[["kv","x",["access"]]]}', "has permissions kv does not take"],
      ['{"file":"f","grants":[]}', "grants is not an object"],
    ] as const) {
      expect(() => read(bad)).toThrow(
        new RegExp(
          `NITRIC_LIKE_DECLARED is not valid \\(.*${why}\\); it is set by the template, so build and deploy again`,
        ),
      );
    }
  });

  it("reads the grants of NITRIC_LIKE_DECLARED as a digit for each store, secret and socket the other variables name, in their order", () => {
    const env = {
      NITRIC_LIKE_SERVICE: "chat",
      NITRIC_LIKE_KV_TABLES: JSON.stringify({ names: "t1", __proto__x: "t2", "7": "t3" }),
      NITRIC_LIKE_SECRETS: JSON.stringify({ constructor: "arn:aws:secretsmanager:::secret:c" }),
      NITRIC_LIKE_WEBSOCKETS: JSON.stringify({ a: { apiId: "a1", events: [] }, b: { apiId: "b1", events: [] } }),
      NITRIC_LIKE_WEBSOCKET_ENDPOINT: "https://{apiId}.example.com/live",
    };
    // "7" is an array index: JSON.parse puts it first, as Object.keys does where the build wrote it.
    const declared = (value: object) => readBindings({ ...env, NITRIC_LIKE_DECLARED: JSON.stringify(value) }).declared;
    expect(
      declared({ file: "f", grants: { kv: "735", secret: "3", websocket: "01" }, resources: [["kv", "late", []]] }),
    ).toEqual({
      file: "f",
      resources: [
        { kind: "kv", name: "7", permissions: ["delete", "get", "set"] },
        { kind: "kv", name: "names", permissions: ["get", "set"] },
        { kind: "kv", name: "__proto__x", permissions: ["delete", "get"] },
        { kind: "secret", name: "constructor", permissions: ["access", "put"] },
        { kind: "websocket", name: "a", permissions: [] },
        { kind: "websocket", name: "b", permissions: ["manage"] },
        { kind: "kv", name: "late", permissions: [] },
      ],
    });
    // A kind left out of grants: none granted on what its variable names.
    expect(declared({ file: "f" })?.resources.map((r) => r.permissions)).toEqual([[], [], [], [], [], []]);
    for (const [grants, why] of [
      [{ kv: "73" }, "grants.kv is not a digit for each of the 3 kv its variables name"],
      [{ secret: "4" }, 'grants.secret has "4", not secret grants'],
      [{ websocket: "1x" }, 'grants.websocket has "1x", not websocket grants'],
      [{ kv: 7 }, "grants.kv is not a digit"],
    ] as const) {
      expect(() => declared({ file: "f", grants })).toThrow(
        new RegExp(`NITRIC_LIKE_DECLARED is not valid \\(${why}.*\\); it is set by the template`),
      );
    }
  });

  it("names NITRIC_LIKE_SECRETS and the fix when it is not a map of ARNs", () => {
    expect(() => readBindings({ NITRIC_LIKE_SERVICE: "chat", NITRIC_LIKE_SECRETS: "[1]" })).toThrow(
      /NITRIC_LIKE_SECRETS is not valid .*build and deploy again/,
    );
    expect(() => readBindings({ NITRIC_LIKE_SERVICE: "chat", NITRIC_LIKE_SECRETS: '{"api-key": 7}' })).toThrow(
      /NITRIC_LIKE_SECRETS\["api-key"\] is 7, not a secret's ARN.*build and deploy again/,
    );
  });
});
