import { describe, expect, it } from "vitest";
import { buildSpec, type CollectedService } from "./spec.js";

const service = (name: string, extra: Partial<CollectedService> = {}): CollectedService => ({
  name,
  file: `services/${name}.ts`,
  declared: [],
  grants: [],
  handlers: [],
  ...extra,
});

const handlers = (socket: string, ...events: ("connect" | "disconnect" | "message")[]) =>
  events.map((event) => ({ socket, event }));

describe("buildSpec", () => {
  it("records which service authorizes a socket, and refuses a socket two services authorize", () => {
    const gate = service("gate", { declared: [{ kind: "websocket", name: "socket" }], authorizes: ["socket"] });
    const chat = service("chat", {
      declared: [{ kind: "websocket", name: "socket" }],
      handlers: handlers("socket", "connect", "disconnect", "message"),
    });
    const one = buildSpec("app", [gate, chat]);
    expect(one.errors).toEqual([]);
    expect(one.spec.resources).toEqual([
      {
        kind: "websocket",
        name: "socket",
        declaredBy: ["gate", "chat"],
        handlers: { connect: "chat", disconnect: "chat", message: "chat" },
        authorizer: "gate",
      },
    ]);
    const two = buildSpec("app", [gate, { ...chat, authorizes: ["socket"] }]);
    expect(two.errors).toEqual([
      'websocket socket: authorized by "gate" and "chat"; a socket has exactly one authorizer, so give websocket("socket", { authorize }) in one service only',
    ]);
  });

  it("lists each socket's routes by action with their services, refuses a route two services handle or an invalid name, and still needs the message handler", () => {
    const chat = service("chat", {
      declared: [{ kind: "websocket", name: "socket" }],
      handlers: [
        ...handlers("socket", "connect", "disconnect", "message"),
        { socket: "socket", event: "message", route: "say" },
        { socket: "socket", event: "message", route: "join" },
      ],
    });
    const rooms = service("rooms", {
      declared: [{ kind: "websocket", name: "socket" }],
      handlers: [{ socket: "socket", event: "message", route: "Join" }],
    });
    const one = buildSpec("app", [chat, rooms]);
    expect(one.errors).toEqual([]);
    expect(one.spec.resources[0]).toMatchObject({
      handlers: { connect: "chat", disconnect: "chat", message: "chat" },
      routes: [
        { action: "Join", service: "rooms" },
        { action: "join", service: "chat" },
        { action: "say", service: "chat" },
      ],
    });
    const twice = buildSpec("app", [
      chat,
      { ...rooms, handlers: [{ socket: "socket", event: "message", route: "say" }] },
    ]);
    const conflict =
      'websocket socket: the route "say" is handled by "chat" and "rooms"; a route has exactly one handler, so keep socket.route("say", ...) in one service';
    expect(twice.conflicts).toEqual([conflict]);
    expect(twice.errors).toEqual([conflict]);
    const invalid = buildSpec("app", [
      chat,
      service("bad", { handlers: [{ socket: "socket", event: "message", route: "$connect" }] }),
    ]);
    expect(invalid.errors).toEqual([
      'service "bad": websocket("socket").route("$connect"): a route name starts with a letter and has only letters, digits, "_", "-", "." and ":", such as "join" or "chat.say"',
    ]);
    // Routes take some messages; the others still need the socket's message handler.
    const onlyRoutes = buildSpec("app", [
      service("r", {
        declared: [{ kind: "websocket", name: "r" }],
        handlers: [...handlers("r", "connect", "disconnect"), { socket: "r", event: "message", route: "join" }],
      }),
    ]);
    expect(onlyRoutes.errors).toEqual([
      'missing message handler for websocket r: add websocket("r").on("message", handler) to one service (its routes take only the messages whose "action" names one; it takes the others)',
    ]);
  });

  it("records a socket's routeBy; services that give none agree, two that differ are an error naming each", () => {
    const typed = service("typed", {
      declared: [{ kind: "websocket", name: "socket", routeBy: "type" }],
      handlers: handlers("socket", "connect", "disconnect", "message"),
    });
    const sender = service("sender", { declared: [{ kind: "websocket", name: "socket" }] });
    const one = buildSpec("app", [sender, typed]);
    expect(one.errors).toEqual([]);
    expect(one.spec.resources[0]).toMatchObject({ name: "socket", routeBy: "type" });
    const other = service("other", { declared: [{ kind: "websocket", name: "socket", routeBy: "kind" }] });
    expect(buildSpec("app", [typed, other, sender]).errors).toEqual([
      'websocket socket: its routes are selected by "type" ("typed") and "kind" ("other"); a socket selects by one property or path, so give websocket("socket", { routeBy }) the same value in every service that gives it',
    ]);
    const bad = service("bad", { declared: [{ kind: "websocket", name: "socket", routeBy: "a..b" }] });
    expect(buildSpec("app", [typed, bad]).errors).toEqual([
      expect.stringMatching(/^service "bad": websocket\("socket", \{ routeBy: "a\.\.b" \}\): routeBy names/),
    ]);
  });

  it("refuses allowedOrigins entries no browser's Origin header can equal, with the origin to write", () => {
    const ok = service("ok", {
      declared: [
        { kind: "websocket", name: "socket", allowedOrigins: ["https://app.example.com", "http://127.0.0.1:3000"] },
      ],
    });
    expect(buildSpec("app", [ok]).errors.filter((e) => e.includes("allowedOrigins"))).toEqual([]);
    // Declared over gRPC (another SDK, another language): the provider compares the header as text.
    const slash = service("slash", {
      declared: [{ kind: "websocket", name: "socket", allowedOrigins: ["https://app.example.com/"] }],
    });
    expect(buildSpec("app", [slash]).errors).toContain(
      'service "slash": websocket("socket"): allowedOrigins entry "https://app.example.com/" is not an origin as browsers send it (scheme and host in lower case, a port if any, no path or trailing slash), so no browser would match it; write "https://app.example.com", or "*" for any',
    );
  });

  it("builds a complete spec without errors", () => {
    const { spec, errors } = buildSpec("app", [
      service("chat", {
        declared: [
          { kind: "websocket", name: "socket" },
          { kind: "kv", name: "connections" },
        ],
        grants: [
          { resource: { kind: "kv", name: "connections" }, permissions: ["set", "get"] },
          { resource: { kind: "kv", name: "connections" }, permissions: ["delete", "get"] },
        ],
        handlers: handlers("socket", "connect", "disconnect", "message"),
      }),
    ]);
    expect(errors).toEqual([]);
    expect(spec.resources).toEqual([
      {
        kind: "websocket",
        name: "socket",
        declaredBy: ["chat"],
        handlers: { connect: "chat", disconnect: "chat", message: "chat" },
      },
      { kind: "kv", name: "connections", declaredBy: ["chat"] },
    ]);
    expect(spec.policies).toEqual([
      { service: "chat", resource: { kind: "kv", name: "connections" }, permissions: ["delete", "get", "set"] },
    ]);
  });

  it("lets handlers of one socket live in different services", () => {
    const { spec, errors } = buildSpec("app", [
      service("a", { handlers: handlers("s", "connect", "disconnect") }),
      service("b", { handlers: handlers("s", "message") }),
    ]);
    expect(errors).toEqual([]);
    expect(spec.resources[0]).toMatchObject({ handlers: { connect: "a", disconnect: "a", message: "b" } });
  });

  it("lists every missing handler, duplicate handler, invalid name and failure at once", () => {
    const { errors } = buildSpec("app", [
      service("a", { handlers: handlers("room", "connect", "message"), declared: [{ kind: "kv", name: "Bad_Name" }] }),
      service("b", { handlers: handlers("room", "message") }),
      service("c", { failure: { message: "exited with code 1", output: "Error: boom" } }),
    ]);
    expect(errors).toEqual([
      'service "a": kv("Bad_Name"): invalid resource name "Bad_Name", use lower-kebab-case such as "bad-name"',
      'service "c" (services/c.ts): exited with code 1\n    Error: boom',
      'websocket room: the message event is handled by "a" and "b"; a socket event has exactly one handler, so keep socket.on("message", ...) in one service',
      'missing disconnect handler for websocket room: add websocket("room").on("disconnect", handler) to one service',
    ]);
  });

  it("does not call a socket's handlers missing when the service that declared it failed before reaching them", () => {
    const { errors } = buildSpec("app", [
      service("a", {
        declared: [{ kind: "websocket", name: "socket" }],
        failure: { message: "exited with code 1", output: "Error: unknown key/value store permission undefined" },
      }),
      service("b", { declared: [{ kind: "websocket", name: "other" }], handlers: handlers("other", "connect") }),
    ]);
    expect(errors).toEqual([
      'service "a" (services/a.ts): exited with code 1\n    Error: unknown key/value store permission undefined',
      'missing disconnect handler for websocket other: add websocket("other").on("disconnect", handler) to one service',
      'missing message handler for websocket other: add websocket("other").on("message", handler) to one service',
    ]);
  });

  it("lists the handler conflicts and the failed services apart, for run to refuse and report", () => {
    const { conflicts, failures, errors } = buildSpec("app", [
      service("a", { handlers: handlers("room", "connect", "disconnect", "message") }),
      service("b", { handlers: handlers("room", "message") }),
      service("c", { failure: { message: "exited with code 1", output: "Error: boom" } }),
    ]);
    expect(conflicts).toEqual([
      'websocket room: the message event is handled by "a" and "b"; a socket event has exactly one handler, so keep socket.on("message", ...) in one service',
    ]);
    expect(failures).toEqual([
      { service: "c", file: "services/c.ts", message: "exited with code 1", output: "Error: boom" },
    ]);
    for (const c of conflicts) expect(errors).toContain(c);
  });

  it("says a service that imports another's entry file registers its handlers too, once per pair, with both files and the fix", () => {
    const chat = service("chat", {
      handlers: [
        ...handlers("socket", "connect", "disconnect", "message"),
        { socket: "socket", event: "message", route: "say" },
      ],
      authorizes: ["socket"],
    });
    // other imports chat's entry: every registration of chat is its too, besides its own.
    const other = service("other", {
      handlers: [...chat.handlers, ...handlers("other", "connect", "disconnect", "message")],
      authorizes: ["socket"],
      imports: [{ service: "chat", file: "services/chat.ts" }],
    });
    const { errors, conflicts } = buildSpec("app", [chat, other]);
    const said =
      'service "other" (services/other.ts) imports services/chat.ts, the entry file of service "chat" (directly or through another module), which runs that file\'s top level in "other" too: websocket("socket").on("connect"), websocket("socket").on("disconnect"), websocket("socket").on("message"), websocket("socket").route("say") and websocket("socket", { authorize }) are each registered by both services; move what services/other.ts takes from services/chat.ts (a constant, a helper) into a module that is not a service entry, such as lib/chat.ts, and import it from both files';
    expect(errors).toEqual([said]);
    expect(conflicts).toEqual([said]);
  });

  it("says each of two services that import each other's entry, and a third service's own conflict as before", () => {
    const both = handlers("room", "connect", "disconnect", "message");
    const { errors } = buildSpec("app", [
      service("a", { handlers: both, imports: [{ service: "b", file: "services/b.ts" }] }),
      service("b", { handlers: both, imports: [{ service: "a", file: "services/a.ts" }] }),
      service("c", { handlers: handlers("room", "message") }),
    ]);
    expect(errors.map((e) => (e.includes(" (directly") ? e.slice(0, e.indexOf(" (directly")) : e))).toEqual([
      'service "a" (services/a.ts) imports services/b.ts, the entry file of service "b"',
      'service "b" (services/b.ts) imports services/a.ts, the entry file of service "a"',
      'websocket room: the message event is handled by "b" and "c"; a socket event has exactly one handler, so keep socket.on("message", ...) in one service',
    ]);
  });

  it("merges the allowed origins every service gives a socket", () => {
    const { spec } = buildSpec("app", [
      service("a", { declared: [{ kind: "websocket", name: "s", allowedOrigins: ["https://b.example"] }] }),
      service("b", {
        declared: [{ kind: "websocket", name: "s", allowedOrigins: ["https://a.example", "https://b.example"] }],
      }),
      service("c", { declared: [{ kind: "websocket", name: "t" }] }),
    ]);
    expect(spec.resources.map((r) => (r.kind === "websocket" ? r.allowedOrigins : null))).toEqual([
      ["https://a.example", "https://b.example"],
      undefined,
    ]);
  });

  it("refuses kinds it does not serve, once per service and resource, naming the service file", () => {
    const { spec, errors, unsupported } = buildSpec("app", [
      service("a", {
        declared: [
          { kind: "bucket", name: "files" },
          { kind: "bucket", name: "files" },
          { kind: "http", name: "" },
        ],
        handlers: handlers("room", "connect", "disconnect"),
      }),
    ]);
    expect(unsupported).toEqual([
      'service "a" (services/a.ts): declares bucket "files", a kind of resource nitric-like does not serve; remove bucket("files")',
      'service "a" (services/a.ts): declares http(), a kind of resource nitric-like does not serve; remove http(...)',
    ]);
    expect(errors).toEqual([
      ...unsupported,
      'missing message handler for websocket room: add websocket("room").on("message", handler) to one service',
    ]);
    expect(spec.resources.map((r) => r.name)).toEqual(["room"]);
  });

  it("lists a service's refused resources in one order whatever order they were declared in", () => {
    const declared = [
      { kind: "topic", name: "updates" },
      { kind: "api", name: "main" },
      { kind: "bucket", name: "files" },
      { kind: "api", name: "admin" },
    ];
    const listed = (order: typeof declared) =>
      buildSpec("app", [
        service("a", { declared: order, handlers: handlers("room", "connect", "disconnect", "message") }),
      ]).unsupported;
    expect(listed(declared).map((line) => /declares (\S+ "\w+")/.exec(line)?.[1])).toEqual([
      'api "admin"',
      'api "main"',
      'bucket "files"',
      'topic "updates"',
    ]);
    expect(listed([...declared].reverse())).toEqual(listed(declared));
  });
});
