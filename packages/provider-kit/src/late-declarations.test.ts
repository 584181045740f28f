// The provider's own refusal of registrations and declarations the collect pass did not see. Our
// SDK refuses them first (once its service's module has loaded), so through it the provider never
// gets one: what @nitric/sdk services (which our SDK does not run) meet is held here, against a
// real CollectedDeclarations and the spec a collect pass makes.
import type { Spec } from "@nitric-like/spec";
import { describe, expect, it } from "vitest";
import { CollectedDeclarations } from "./late-declarations.js";

const SPEC: Spec = {
  name: "late",
  services: [
    { name: "chat", file: "services/chat.ts" },
    { name: "lobby", file: "services/lobby.ts" },
  ],
  resources: [
    { kind: "kv", name: "names", declaredBy: ["chat"] },
    {
      kind: "websocket",
      name: "lobby",
      declaredBy: ["chat", "lobby"],
      handlers: { connect: "lobby" },
      authorizer: "lobby",
    },
    {
      kind: "websocket",
      name: "socket",
      declaredBy: ["chat"],
      handlers: { connect: "chat", message: "chat" },
      routes: [{ action: "say", service: "chat" }],
    },
  ],
  policies: [{ service: "chat", resource: { kind: "kv", name: "names" }, permissions: ["get"] }],
};

/** A CollectedDeclarations of `spec` and the warnings it gives, in order. */
function collected(spec: Spec = SPEC) {
  const warnings: string[] = [];
  const logger = {
    info: () => {},
    warn: (message: string) => warnings.push(message),
    error: () => {},
  };
  return { declarations: new CollectedDeclarations(spec, logger), warnings };
}

describe("the provider's check of a handler registration", () => {
  it("refuses a route the collect pass did not see the service register, with the handler, the service's file and the fix, said once", () => {
    const { declarations, warnings } = collected();
    const refused =
      'websocket("socket").route("late"): service "chat" registered it after it started (in a handler, or in code that does not run when nitric-like collects what the service registers), so spec, build and up never see it and on AWS API Gateway would have no route for it, and its messages would go to the message handler; the provider ignores it, as a deployment would; register it at the top level of services/chat.ts';
    expect(declarations.checkRegistration("chat", { socket: "socket", event: "message", route: "late" })).toBe(refused);
    // Again (a handler that registers on every event): refused, said no more.
    expect(declarations.checkRegistration("chat", { socket: "socket", event: "message", route: "late" })).toBe(refused);
    expect(warnings).toEqual([refused]);
  });

  it("accepts what the collect pass saw the service register: its events, its routes", () => {
    const { declarations, warnings } = collected();
    expect(declarations.checkRegistration("chat", { socket: "socket", event: "message" })).toBeUndefined();
    expect(declarations.checkRegistration("chat", { socket: "socket", event: "message", route: "" })).toBeUndefined();
    expect(
      declarations.checkRegistration("chat", { socket: "socket", event: "message", route: "say" }),
    ).toBeUndefined();
    expect(declarations.checkRegistration("lobby", { socket: "lobby", event: "connect" })).toBeUndefined();
    // A service the spec does not list (not collected yet) has nothing to be checked against.
    expect(declarations.checkRegistration("new", { socket: "socket", event: "disconnect" })).toBeUndefined();
    expect(warnings).toEqual([]);
  });

  it("says a handler the collect pass saw another service register as that service's, naming both files", () => {
    const { declarations } = collected();
    const refused = declarations.checkRegistration("chat", { socket: "lobby", event: "connect" });
    expect(refused).toMatch(
      /^websocket\("lobby"\)\.on\("connect"\): service "chat" registered it after it started .* on AWS its connect events would go to the function of service "lobby"; the provider ignores it, as a deployment would\. The collect pass saw service "lobby" \(services\/lobby\.ts\) register it: /,
    );
    expect(refused).toContain("or register it at the top level of services/chat.ts and not in services/lobby.ts");
    // An event nobody handles: API Gateway would never send it to this service.
    expect(declarations.checkRegistration("chat", { socket: "socket", event: "disconnect" })).toContain(
      "on AWS API Gateway would never send this service its disconnect events",
    );
  });

  it("keeps routes from clients as data: __proto__ and constructor are refused as any other, each said once", () => {
    const { declarations, warnings } = collected();
    for (const route of ["__proto__", "constructor", "__proto__"])
      expect(declarations.checkRegistration("chat", { socket: "socket", event: "message", route })).toContain(
        `websocket("socket").route(${JSON.stringify(route)}): service "chat" registered it after it started`,
      );
    expect(warnings).toHaveLength(2);
  });

  it("waits for a collect pass under way, and accepts a route the new spec has the service register", async () => {
    const { declarations, warnings } = collected();
    let collectedAgain = () => {};
    declarations.collecting("chat", new Promise<void>((resolve) => (collectedAgain = resolve)));
    const checked = declarations.checkRegistration("chat", { socket: "socket", event: "message", route: "join" });
    expect(checked).toBeInstanceOf(Promise);
    const socket = SPEC.resources[2] as Extract<Spec["resources"][number], { kind: "websocket" }>;
    declarations.setSpec({
      ...SPEC,
      resources: [
        ...SPEC.resources.slice(0, 2),
        { ...socket, routes: [...(socket.routes ?? []), { action: "join", service: "chat" }] },
      ],
    });
    collectedAgain();
    expect(await checked).toBeUndefined();
    expect(warnings).toEqual([]);
  });

  it("refuses an authorizer given by a service the collect pass did not see give it, naming the one it saw", () => {
    const { declarations, warnings } = collected();
    expect(declarations.checkAuthorizer("lobby", "lobby")).toBeUndefined();
    const refused = declarations.checkAuthorizer("chat", "lobby");
    expect(refused).toMatch(
      /^websocket\("lobby", \{ authorize \}\): service "chat" gave it after it started .* on AWS the authorize of service "lobby" would run instead; /,
    );
    expect(declarations.checkAuthorizer("chat", "socket")).toContain(
      'give authorize where the top level of services/chat.ts declares websocket("socket")',
    );
    expect(warnings).toHaveLength(2);
  });
});

describe("the provider's check of a declaration", () => {
  it("refuses a resource and a wider grant the collect pass did not see, with the service's file and the whole fix; accepts what it saw", async () => {
    const { declarations } = collected();
    expect(declarations.check("chat", { kind: "kv", name: "names" })).toBeUndefined();
    expect(declarations.check("chat", { kind: "kv", name: "names", permissions: ["get"] })).toBeUndefined();
    expect(declarations.check("chat", { kind: "kv", name: "names", permissions: ["get", "set"] })).toBe(
      'kv("names").allow("set"): service "chat" asked for "set" after it started, beyond the "get" its top level grants (in a handler, or in code that does not run when nitric-like collects what the service declares), so spec, build and up never see it and on AWS its table or its IAM permission would not exist; declare it at the top level of services/chat.ts, as kv("names").allow("get", "set"), and use that handle in the handler',
    );
    expect(declarations.check("chat", { kind: "secret", name: "token" })).toContain(
      'secret("token"): service "chat" declared it after it started',
    );
    // Its calls are refused in the same words.
    expect(declarations.refusal("chat", "secret", "token")).toContain('secret("token"): service "chat" declared it');
    expect(declarations.refusal("chat", "kv", "names")).toContain('kv("names").allow("set")');
  });
});
