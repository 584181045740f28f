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
      ['{"file":"services/chat.ts"}', "no resources array"],
      ['{"file":"f","resources":[["kv","x"]]}', "is not \\[kind, name, permissions\\]"],
      ['{"file":"f","resources":[["toString","x",[]]]}', "names no websocket, kv store or secret"],
      ['{"file":"f","resources":[["kv","x",["access"]]]}', "has permissions kv does not take"],
    ] as const) {
      expect(() => read(bad)).toThrow(
        new RegExp(
          `NITRIC_LIKE_DECLARED is not valid \\(.*${why}\\); it is set by the template, so build and deploy again`,
        ),
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
