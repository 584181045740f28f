// The CloudFormation template's logical ids and redeploys: every valid name gets its own id (no
// resource or output lost to a clash), the Deployment changes exactly when what API Gateway serves
// changes, and the self-invocation is never retried by Lambda.
import { ROUTE_SELECTION_EXPRESSION, routeNameProblem, type Spec, type WebsocketEvent } from "@nitric-like/spec";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  buildTemplate,
  LOG_RETENTION_DAYS,
  logicalName,
  routeLogicalName,
  SECRET_TAG,
  SELF_INVOKE_MAX_AGE_SECONDS,
  secretOutputKey,
} from "../src/build/template.js";
import { type Physical, resolveIntrinsics } from "../src/emulator/intrinsics.js";
import { readBindings } from "../src/runtime/bindings.js";

type Template = {
  Resources: Record<
    string,
    { Type: string; Properties: Record<string, unknown>; DependsOn?: string[]; DeletionPolicy?: string }
  >;
  Outputs: Record<string, { Description: string; Value: unknown }>;
};

/** A valid resource name: lower-kebab words of letters and digits, at most 64 characters. */
const validName = fc
  .array(fc.stringMatching(/^[a-z0-9]{1,6}$/), { minLength: 1, maxLength: 5 })
  .map((words) => words.join("-"))
  .filter((n) => n.length <= 64);

/** An app: sockets with every event handled by the first service, stores all services use. */
function app(
  sockets: string[],
  stores: string[],
  services: string[],
  handlers?: Record<string, string> | ((socket: string) => Record<string, string>),
): Spec {
  const first = services[0] ?? "svc";
  return {
    name: "app",
    services: services.map((name) => ({ name, file: `services/${name}.ts` })),
    resources: [
      ...sockets.map((name) => ({
        kind: "websocket" as const,
        name,
        declaredBy: [first],
        handlers: ((typeof handlers === "function" ? handlers(name) : handlers) ?? {
          connect: first,
          disconnect: first,
          message: first,
        }) as Partial<Record<WebsocketEvent, string>>,
      })),
      ...stores.map((name) => ({ kind: "kv" as const, name, declaredBy: services })),
    ],
    policies: [
      ...stores.flatMap((name) =>
        services.map((service) => ({
          service,
          resource: { kind: "kv" as const, name },
          permissions: ["get" as const, "set" as const, "delete" as const],
        })),
      ),
    ],
  };
}

function template(spec: Spec, keys?: Record<string, string>): Template {
  const artifactKeys = keys ?? Object.fromEntries(spec.services.map((s) => [s.name, `k/${s.name}.zip`]));
  return buildTemplate({ spec, artifactKeys }) as Template;
}

/** The stack's unique id, as the last part of its ARN, in deployed(). */
const STACK_UUID = "6d3f1a20-9c4b-11f0-8e2a-0a1b2c3d4e5f";

/**
 * The physical ids CloudFormation would give the template's resources, for the emulator's
 * resolver: each resource's Ref is its logical id in lower case, padded to 10 characters, but the
 * Ref of a function that the template names is that name; a function's Arn ends in its name; the
 * stack is in cn-north-1 (partition aws-cn, URL suffix amazonaws.com.cn).
 */
function physicalOf(t: Template): Physical {
  const physical: Physical = {
    ref: {
      "AWS::Region": "cn-north-1",
      "AWS::URLSuffix": "amazonaws.com.cn",
      "AWS::Partition": "aws-cn",
      "AWS::AccountId": "123456789012",
      "AWS::StackName": "app",
      "AWS::StackId": `arn:aws-cn:cloudformation:cn-north-1:123456789012:stack/app/${STACK_UUID}`,
      ArtifactBucket: "bucket",
    },
    attributes: {},
  };
  for (const [id, r] of Object.entries(t.Resources)) {
    const isFunction = r.Type === "AWS::Lambda::Function";
    const given = isFunction ? r.Properties.FunctionName : undefined;
    const name =
      given === undefined ? id.toLowerCase().padEnd(10, "0").slice(0, 10) : String(resolveIntrinsics(given, physical));
    physical.ref[id] = name;
    const known: Record<string, string> = isFunction
      ? { Arn: `arn:aws-cn:lambda:cn-north-1:123456789012:function:${name}` }
      : {};
    physical.attributes[id] = new Proxy(known, {
      get: (target, attribute) => target[String(attribute)] ?? `${id}.${String(attribute)}`,
    });
  }
  return physical;
}

/** The template's resources as CloudFormation would fill them in (physicalOf). */
function deployed(t: Template): Template["Resources"] {
  return resolveIntrinsics(t.Resources, physicalOf(t)) as Template["Resources"];
}

/** A function's environment as CloudFormation would fill it in. */
function deployedEnvironment(t: Template, fn: string): Record<string, string> {
  const properties = deployed(t)[fn]?.Properties as { Environment?: { Variables?: Record<string, string> } };
  return properties?.Environment?.Variables ?? {};
}

const ofType = (t: Template, type: string) => Object.keys(t.Resources).filter((id) => t.Resources[id]?.Type === type);

describe("logical ids", () => {
  it("keep the PascalCase ids names without a digit word always had", () => {
    expect(logicalName("chat-service")).toBe("ChatService");
    expect(logicalName("room1")).toBe("Room1");
    expect(logicalName("1st-room")).toBe("1stRoom");
    expect(logicalName("room-1")).not.toBe("Room1");
  });

  it("are one to one over valid names (property)", () => {
    fc.assert(
      fc.property(validName, validName, (a, b) => {
        fc.pre(a !== b);
        expect(logicalName(a)).not.toBe(logicalName(b));
        expect(logicalName(a)).toMatch(/^[A-Za-z0-9]+$/);
      }),
      { numRuns: 5000 },
    );
    // The pairs a random search rarely meets.
    const tricky = ["room1", "room-1", "room-z1", "room-zz1", "roomz-1", "a1-2", "a12", "a-12", "a-1-2", "x-room-z1"];
    expect(new Set(tricky.map(logicalName)).size).toBe(tricky.length);
  });

  it("lose no resource and no output for sockets room1 and room-1", () => {
    const t = template(app(["room1", "room-1"], [], ["chat"]));
    expect(ofType(t, "AWS::ApiGatewayV2::RouteResponse")).toHaveLength(2);
    expect(ofType(t, "AWS::ApiGatewayV2::Stage")).toHaveLength(2);
    expect(
      Object.values(t.Outputs)
        .map((o) => o.Description)
        .sort(),
    ).toEqual(["websocket room-1", "websocket room1"]);
  });

  it("keep one permission per socket and target service, even where their names run together", () => {
    // (socket a-b, service c) and (socket a, service b-c) are both "ABC" run together.
    const spec = app(["a-b", "a"], [], ["c", "b-c"], (socket) =>
      socket === "a"
        ? { connect: "b-c", disconnect: "b-c", message: "b-c" }
        : { connect: "c", disconnect: "c", message: "c" },
    );
    const t = template(spec);
    const permissions = ofType(t, "AWS::Lambda::Permission").map((id) => t.Resources[id]?.Properties.FunctionName);
    expect(permissions).toHaveLength(2);
    expect(new Set(permissions.map((p) => JSON.stringify(p))).size).toBe(2);
  });

  it("lose no socket, store or service for any set of valid names (property)", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(validName, { minLength: 1, maxLength: 5 }),
        fc.uniqueArray(validName, { maxLength: 5 }),
        fc.uniqueArray(validName, { minLength: 1, maxLength: 4 }),
        fc.array(fc.nat(), { minLength: 15, maxLength: 15 }),
        (sockets, stores, services, picks) => {
          // Each event of each socket goes to a service picked at random.
          const handlers = (socket: string) => {
            const i = sockets.indexOf(socket) * 3;
            const pick = (n: number) => services[(picks[i + n] ?? 0) % services.length] as string;
            return { connect: pick(0), disconnect: pick(1), message: pick(2) };
          };
          const targets = sockets.reduce((n, socket) => n + new Set(Object.values(handlers(socket))).size, 0);
          const t = template(app(sockets, stores, services, handlers));
          const count = (type: string) => ofType(t, type).length;
          expect(count("AWS::ApiGatewayV2::Api")).toBe(sockets.length);
          expect(count("AWS::ApiGatewayV2::Route")).toBe(3 * sockets.length);
          expect(count("AWS::ApiGatewayV2::Integration")).toBe(3 * sockets.length);
          expect(count("AWS::ApiGatewayV2::RouteResponse")).toBe(sockets.length);
          expect(count("AWS::ApiGatewayV2::Deployment")).toBe(sockets.length);
          expect(count("AWS::ApiGatewayV2::Stage")).toBe(sockets.length);
          expect(count("AWS::Lambda::Permission")).toBe(targets);
          expect(count("AWS::DynamoDB::Table")).toBe(stores.length + 1);
          expect(count("AWS::Lambda::Function")).toBe(services.length);
          expect(count("AWS::IAM::Role")).toBe(services.length);
          expect(Object.keys(t.Outputs)).toHaveLength(sockets.length);
          for (const id of Object.keys(t.Resources)) expect(id).toMatch(/^[A-Za-z0-9]{1,255}$/);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("function memory", () => {
  it("is each service's own memory, else 512 MB", () => {
    const spec = app(["socket"], [], ["chat", "report"]);
    const artifactKeys = { chat: "k/chat.zip", report: "k/report.zip" };
    const t = buildTemplate({ spec, artifactKeys, serviceMemoryMb: { report: 2048 } }) as Template;
    const memory = Object.fromEntries(
      ofType(t, "AWS::Lambda::Function").map((id) => {
        const p = t.Resources[id]?.Properties as { Description: string; MemorySize: number };
        return [/service "([^"]+)"/.exec(p.Description)?.[1], p.MemorySize];
      }),
    );
    expect(memory).toEqual({ chat: 512, report: 2048 });
  });
});

describe("the Deployment", () => {
  const deploymentOf = (t: Template) => ofType(t, "AWS::ApiGatewayV2::Deployment");
  const split = (message: string) => app(["socket"], [], ["a", "b"], { connect: "a", disconnect: "a", message });

  it("gets a new logical id when the message handler moves to another service, and the stage follows it", () => {
    const before = template(split("a"));
    const after = template(split("b"));
    const [d1] = deploymentOf(before);
    const [d2] = deploymentOf(after);
    expect(d1).toBeDefined();
    expect(d2).not.toBe(d1);
    const [stage] = ofType(after, "AWS::ApiGatewayV2::Stage");
    expect(after.Resources[stage as string]?.Properties.DeploymentId).toEqual({ Ref: d2 });
  });

  it("keeps its logical id when nothing it serves changed (new code, a new store)", () => {
    const base = template(split("a"));
    const newCode = template(split("a"), { a: "k/a-2.zip", b: "k/b-2.zip" });
    const withStore = template({
      ...split("a"),
      resources: [...split("a").resources, { kind: "kv", name: "s", declaredBy: ["a"] }],
    });
    expect(deploymentOf(newCode)).toEqual(deploymentOf(base));
    expect(deploymentOf(withStore)).toEqual(deploymentOf(base));
  });

  it("gets a new logical id when a route is added or removed", () => {
    const base = template(split("a"));
    const noDisconnect = template(app(["socket"], [], ["a", "b"], { connect: "a", message: "a" }));
    expect(deploymentOf(noDisconnect)).not.toEqual(deploymentOf(base));
  });
});

describe("the self-invocation (messages sent during connect, broadcast pages)", () => {
  it("has an EventInvokeConfig without Lambda retries, and leave to invoke itself, for each function that reaches a socket", () => {
    const t = template(app(["socket"], [], ["a", "b", "c"], { connect: "a", message: "b" }));
    const configs = ofType(t, "AWS::Lambda::EventInvokeConfig").map((id) => t.Resources[id]?.Properties);
    const config = (fn: string) => ({
      FunctionName: { Ref: fn },
      Qualifier: "$LATEST",
      MaximumRetryAttempts: 0,
      MaximumEventAgeInSeconds: SELF_INVOKE_MAX_AGE_SECONDS,
    });
    // c handles no event of the socket and declares none of it: it cannot broadcast, so it never invokes itself.
    expect(configs).toEqual([config("AFunction"), config("BFunction")]);
    const grants = ofType(t, "AWS::IAM::Policy").map((id) => t.Resources[id]?.Properties);
    expect(grants).toEqual(
      ["A", "B"].map((n) =>
        expect.objectContaining({
          Roles: [{ Ref: `${n}Role` }],
          PolicyDocument: {
            Version: "2012-10-17",
            Statement: [
              { Effect: "Allow", Action: "lambda:InvokeFunction", Resource: { "Fn::GetAtt": [`${n}Function`, "Arn"] } },
            ],
          },
        }),
      ),
    );
    expect(SELF_INVOKE_MAX_AGE_SECONDS).toBeGreaterThanOrEqual(60);
    expect(SELF_INVOKE_MAX_AGE_SECONDS).toBeLessThanOrEqual(21600);
  });
});

/** The resources each resource refers to (Ref, Fn::GetAtt, Fn::Sub, DependsOn): CloudFormation's order. */
function references(t: Template): Map<string, Set<string>> {
  const ids = new Set(Object.keys(t.Resources));
  const found = (value: unknown, into: Set<string>): void => {
    if (Array.isArray(value)) for (const v of value) found(v, into);
    else if (value !== null && typeof value === "object") {
      for (const [key, v] of Object.entries(value)) {
        if (key === "Ref" && ids.has(String(v))) into.add(String(v));
        else if (key === "Fn::GetAtt" && Array.isArray(v) && ids.has(String(v[0]))) into.add(String(v[0]));
        else if (key === "Fn::Sub")
          for (const [, name] of String(v).matchAll(/\$\{([^}.]+)[^}]*\}/g))
            if (ids.has(name as string)) into.add(name as string);
        found(v, into);
      }
    }
  };
  return new Map(
    Object.entries(t.Resources).map(([id, r]) => {
      const into = new Set<string>(r.DependsOn ?? []);
      found(r.Properties, into);
      return [id, into];
    }),
  );
}

/** A cycle among the template's resources (CloudFormation refuses such a template), or undefined. */
function cycleOf(t: Template): string[] | undefined {
  const graph = references(t);
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (id: string): string[] | undefined => {
    if (state.get(id) === "done") return undefined;
    if (state.get(id) === "open") return [...path.slice(path.indexOf(id)), id];
    state.set(id, "open");
    path.push(id);
    for (const next of graph.get(id) ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    path.pop();
    state.set(id, "done");
    return undefined;
  };
  for (const id of graph.keys()) {
    const cycle = visit(id);
    if (cycle) return cycle;
  }
  return undefined;
}

describe("the late disconnect (a connect handler's that answered after its client was refused)", () => {
  it("names the disconnect handler's function to the connect handler's, when another service's, and lets it invoke exactly that function", () => {
    const t = template(
      app(["split", "whole"], [], ["gate", "keeper"], (socket) =>
        socket === "split"
          ? { connect: "gate", disconnect: "keeper", message: "keeper" }
          : { connect: "keeper", disconnect: "keeper", message: "keeper" },
      ),
    );
    const gate = readBindings(deployedEnvironment(t, "GateFunction"));
    expect(gate.websockets.split?.disconnectFunction).toBe("keeperfunc");
    expect(JSON.stringify(t.Resources.GateFunction?.Properties)).toContain('\\"disconnect\\":\\"${KeeperFunction}\\"');
    // The function that handles both of a socket's events runs the disconnect itself.
    const keeper = readBindings(deployedEnvironment(t, "KeeperFunction"));
    expect(keeper.websockets.whole?.disconnectFunction).toBeUndefined();
    expect(keeper.websockets.split?.disconnectFunction).toBeUndefined();
    expect(t.Resources.GateLateDisconnectPolicy).toEqual({
      Type: "AWS::IAM::Policy",
      Properties: {
        PolicyName: "nitric-like-late-disconnect",
        Roles: [{ Ref: "GateRole" }],
        PolicyDocument: {
          Version: "2012-10-17",
          Statement: [
            {
              Effect: "Allow",
              Action: "lambda:InvokeFunction",
              Resource: [{ "Fn::GetAtt": ["KeeperFunction", "Arn"] }],
            },
          ],
        },
      },
    });
    expect(ofType(t, "AWS::IAM::Policy").filter((id) => id.includes("LateDisconnect"))).toEqual([
      "GateLateDisconnectPolicy",
    ]);
    expect(cycleOf(t)).toBeUndefined();
  });

  it("names the functions of two services that each handle the disconnect of the other's socket, so each gets the other's name and may invoke it, with no cycle for CloudFormation", () => {
    // a handles x's connect and y's disconnect, b the other way round: were each function's name
    // in the other's environment a Ref, each would have to be created first.
    const cross = (order: string[]) =>
      template(
        app(order, [], ["a", "b", "c"], (socket) =>
          socket === "x"
            ? { connect: "a", disconnect: "b", message: "a" }
            : socket === "y"
              ? { connect: "b", disconnect: "a", message: "b" }
              : { connect: "c", disconnect: "a", message: "c" },
        ),
      );
    const t = cross(["x", "y", "z"]);
    expect(cycleOf(t)).toBeUndefined();
    const physical = physicalOf(t);
    // Named from the stack's unique id, in Lambda's charset and 64 characters.
    expect(physical.ref.AFunction).toBe(`a-${STACK_UUID}`);
    expect(physical.ref.BFunction).toBe(`b-${STACK_UUID}`);
    expect(t.Resources.AFunction?.Properties.FunctionName).toEqual({
      "Fn::Sub": [
        "a-${StackUuid}",
        { StackUuid: { "Fn::Select": ["2", { "Fn::Split": ["/", { Ref: "AWS::StackId" }] }] } },
      ],
    });
    // c is on no cycle: CloudFormation names its function, as it always did (no replacement).
    expect(t.Resources.CFunction?.Properties).not.toHaveProperty("FunctionName");
    expect(readBindings(deployedEnvironment(t, "AFunction")).websockets.x?.disconnectFunction).toBe(
      physical.ref.BFunction,
    );
    expect(readBindings(deployedEnvironment(t, "BFunction")).websockets.y?.disconnectFunction).toBe(
      physical.ref.AFunction,
    );
    expect(readBindings(deployedEnvironment(t, "CFunction")).websockets.z?.disconnectFunction).toBe(
      physical.ref.AFunction,
    );
    // Each may invoke exactly the other's function.
    const granted = (policy: string) =>
      (
        deployed(t)[policy]?.Properties as
          | { PolicyDocument: { Statement: { Action: unknown; Resource: unknown }[] } }
          | undefined
      )?.PolicyDocument.Statement;
    const arn = (fn: string) => physical.attributes[fn]?.Arn;
    expect(granted("ALateDisconnectPolicy")).toEqual([
      { Effect: "Allow", Action: "lambda:InvokeFunction", Resource: [arn("BFunction")] },
    ]);
    expect(granted("BLateDisconnectPolicy")).toEqual([
      { Effect: "Allow", Action: "lambda:InvokeFunction", Resource: [arn("AFunction")] },
    ]);
    expect(granted("CLateDisconnectPolicy")).toEqual([
      { Effect: "Allow", Action: "lambda:InvokeFunction", Resource: [arn("AFunction")] },
    ]);
    // The order the sockets are declared in names no other function.
    const reordered = cross(["z", "y", "x"]);
    for (const fn of ["AFunction", "BFunction", "CFunction"])
      expect(reordered.Resources[fn]?.Properties.FunctionName).toEqual(t.Resources[fn]?.Properties.FunctionName);
  });

  it("moves the stage of a socket whose function comes to be named to a new deployment, which calls the new function", () => {
    // b's function is named once a second socket closes the cycle: CloudFormation replaces it,
    // and the "a" socket's integrations, still `${BFunction.Arn}` in the template, call the new one
    // only once deployed again.
    const before = template(app(["x"], [], ["a", "b"], { connect: "a", disconnect: "b", message: "b" }));
    const after = template(
      app(["x", "y"], [], ["a", "b"], (socket) =>
        socket === "x" ? { connect: "a", disconnect: "b", message: "b" } : { connect: "b", disconnect: "a" },
      ),
    );
    const deploymentOf = (t: Template) => ofType(t, "AWS::ApiGatewayV2::Deployment").filter((id) => id.startsWith("X"));
    expect(after.Resources.BFunction?.Properties).toHaveProperty("FunctionName");
    expect(before.Resources.BFunction?.Properties).not.toHaveProperty("FunctionName");
    expect(deploymentOf(after)).toHaveLength(1);
    expect(deploymentOf(after)).not.toEqual(deploymentOf(before));
  });

  it("gives a service whose name Lambda would not take, or is too long beside the stack's id, a function name it takes, one per service", () => {
    const long = "a-service-with-a-rather-long-name";
    const t = template(
      app(["x", "y"], [], [long, "b.c"], (socket) =>
        socket === "x" ? { connect: long, disconnect: "b.c" } : { connect: "b.c", disconnect: long },
      ),
    );
    expect(cycleOf(t)).toBeUndefined();
    const names = Object.entries(physicalOf(t).ref)
      .filter(([id]) => t.Resources[id]?.Type === "AWS::Lambda::Function")
      .map(([, name]) => name);
    expect(names).toHaveLength(2);
    for (const name of names) {
      expect(name).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
      expect(name.endsWith(`-${STACK_UUID}`)).toBe(true);
    }
    expect(names.some((n) => n.startsWith("a-service-with-a-r"))).toBe(true);
    expect(names.some((n) => n.startsWith("b_c_"))).toBe(true);
  });

  it("never makes a template whose resources refer to each other in a cycle, however the events are spread over services (property)", () => {
    const services = ["a", "b", "c"];
    const handlerOf = fc.constantFrom(...services);
    fc.assert(
      fc.property(
        fc.array(fc.record({ connect: handlerOf, disconnect: handlerOf, message: handlerOf }), {
          minLength: 1,
          maxLength: 5,
        }),
        (handlers) => {
          const sockets = handlers.map((_, i) => `s${i}`);
          const t = template(
            app(sockets, [], services, (socket) => handlers[Number(socket.slice(1))] as Record<string, string>),
          );
          expect(cycleOf(t)).toBeUndefined();
          // Every cross pair is kept: the connect function gets the other's name and may invoke it.
          const physical = physicalOf(t);
          const resolved = deployed(t);
          for (const [i, h] of handlers.entries()) {
            const fn = `${h.connect.toUpperCase()}Function`;
            const named = readBindings(deployedEnvironment(t, fn)).websockets[`s${i}`]?.disconnectFunction;
            if (h.connect === h.disconnect) expect(named).toBeUndefined();
            else {
              const target = `${h.disconnect.toUpperCase()}Function`;
              expect(named).toBe(physical.ref[target]);
              const policy = resolved[`${h.connect.toUpperCase()}LateDisconnectPolicy`]?.Properties as {
                PolicyDocument: { Statement: { Resource: unknown[] }[] };
              };
              expect(policy.PolicyDocument.Statement[0]?.Resource).toContainEqual(physical.attributes[target]?.Arn);
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("rooms and connection state", () => {
  it("live in the one connections table, granted (with UpdateItem) only to functions that reach a socket, on that table only", () => {
    const t = template(app(["socket"], ["store"], ["a", "b", "c"], { connect: "a", message: "b" }));
    expect(ofType(t, "AWS::DynamoDB::Table").sort()).toEqual(["ConnectionsTable", "StoreKvTable"]);
    const statements = (role: string) =>
      (
        t.Resources[role]?.Properties.Policies as
          | { PolicyDocument: { Statement: { Action: unknown; Resource: unknown }[] } }[]
          | undefined
      )?.[0]?.PolicyDocument.Statement ?? [];
    const onConnections = (role: string) =>
      statements(role).filter(
        (s) => JSON.stringify(s.Resource) === JSON.stringify({ "Fn::GetAtt": ["ConnectionsTable", "Arn"] }),
      );
    for (const role of ["ARole", "BRole"]) {
      expect(onConnections(role).map((s) => s.Action)).toEqual([
        ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"],
      ]);
    }
    // c reaches no socket: nothing on the connections table, and UpdateItem nowhere (kv never updates).
    expect(onConnections("CRole")).toEqual([]);
    expect(JSON.stringify(statements("CRole"))).not.toContain("UpdateItem");
  });
});

describe("logs and the connections table", () => {
  type Statement = { Action: unknown; Resource: unknown; Condition?: unknown };
  const statementsOf = (t: Template, role: string) =>
    ((t.Resources[role]?.Properties.Policies ?? []) as { PolicyDocument: { Statement: Statement[] } }[]).flatMap(
      (p) => p.PolicyDocument.Statement,
    );

  it("gives each function its own log group with a retention, and grants writing to that group only", () => {
    const t = template(app(["chat"], [], ["api", "worker"]));
    for (const service of ["Api", "Worker"]) {
      const group = t.Resources[`${service}LogGroup`] as Template["Resources"][string] & { DeletionPolicy?: string };
      expect(group.Type).toBe("AWS::Logs::LogGroup");
      expect(group.Properties.RetentionInDays).toBe(LOG_RETENTION_DAYS);
      expect(group.DeletionPolicy).toBe("Delete");
      expect(group.Properties.LogGroupName).toEqual({
        "Fn::Sub": `/aws/lambda/\${AWS::StackName}/${service.toLowerCase()}`,
      });
      // The function logs into it (so it exists before the function's first line)...
      expect(t.Resources[`${service}Function`]?.Properties.LoggingConfig).toEqual({
        LogGroup: { Ref: `${service}LogGroup` },
      });
      // ...and its role may write there and nowhere else: no managed policy over every log group.
      const role = t.Resources[`${service}Role`];
      expect(role?.Properties.ManagedPolicyArns).toBeUndefined();
      const logs = statementsOf(t, `${service}Role`).filter((s) => JSON.stringify(s.Action).includes("logs:"));
      expect(logs).toEqual([
        {
          Effect: "Allow",
          Action: ["logs:CreateLogStream", "logs:PutLogEvents"],
          Resource: { "Fn::GetAtt": [`${service}LogGroup`, "Arn"] },
        },
      ]);
    }
    // API Gateway may invoke a function only once its log group is there.
    const permission = ofType(t, "AWS::Lambda::Permission").map((id) => t.Resources[id]);
    expect(permission[0]?.DependsOn).toEqual(["ApiLogGroup"]);
    expect(template(app([], [], ["api"]), undefined).Resources.ApiFunction).toBeDefined();
    expect(
      (buildTemplate({ spec: app([], [], ["api"]), artifactKeys: { api: "k" }, logRetentionDays: 90 }) as Template)
        .Resources.ApiLogGroup?.Properties.RetentionInDays,
    ).toBe(90);
  });

  it("lets a service read and write only its own sockets' connection records (dynamodb:LeadingKeys)", () => {
    const spec = app(["lobby", "room-1"], [], ["doorman", "speaker"], (socket) =>
      socket === "lobby"
        ? { connect: "doorman", disconnect: "doorman", message: "doorman" }
        : { connect: "speaker", disconnect: "speaker", message: "speaker" },
    );
    const t = template(spec);
    const connections = (role: string) =>
      statementsOf(t, role).filter((s) => JSON.stringify(s.Resource).includes("ConnectionsTable"));
    expect(connections("DoormanRole")).toEqual([
      expect.objectContaining({
        Condition: { "ForAllValues:StringLike": { "dynamodb:LeadingKeys": ["lobby", "lobby#*"] } },
      }),
    ]);
    expect(connections("SpeakerRole")).toEqual([
      expect.objectContaining({
        Condition: { "ForAllValues:StringLike": { "dynamodb:LeadingKeys": ["room-1", "room-1#*"] } },
      }),
    ]);
    // The table's partition key is the socket name, which is what LeadingKeys compares.
    expect(t.Resources.ConnectionsTable?.Properties.KeySchema).toEqual([
      { AttributeName: "socket", KeyType: "HASH" },
      { AttributeName: "id", KeyType: "RANGE" },
    ]);
  });
});

describe("secrets", () => {
  type Statement = { Action: unknown; Resource: unknown };
  const statementsOf = (t: Template, role: string) =>
    ((t.Resources[role]?.Properties.Policies ?? []) as { PolicyDocument: { Statement: Statement[] } }[]).flatMap(
      (p) => p.PolicyDocument.Statement,
    );
  /** An app whose `reader` may access both secrets and `writer` may put `api-key` only; `idle` holds none. */
  const spec = (): Spec => ({
    name: "app",
    services: ["idle", "reader", "writer"].map((name) => ({ name, file: `services/${name}.ts` })),
    resources: [
      { kind: "secret", name: "api-key", declaredBy: ["reader", "writer"] },
      { kind: "secret", name: "db-1", declaredBy: ["reader"] },
    ],
    policies: [
      { service: "reader", resource: { kind: "secret", name: "api-key" }, permissions: ["access"] },
      { service: "reader", resource: { kind: "secret", name: "db-1" }, permissions: ["access", "put"] },
      { service: "writer", resource: { kind: "secret", name: "api-key" }, permissions: ["put"] },
    ],
  });

  it("make one Secrets Manager secret each, unnamed (CloudFormation names it), tagged, described, deleted with the stack, with its ARN as an output", () => {
    const t = template(spec());
    const secrets = ofType(t, "AWS::SecretsManager::Secret");
    expect(secrets).toEqual(["ApiKeySecret", "xDbZ1Secret"]);
    const apiKey = t.Resources.ApiKeySecret;
    expect(apiKey?.Properties).toEqual({
      Description: 'nitric-like secret "api-key" of project "app"',
      Tags: [{ Key: SECRET_TAG, Value: "api-key" }],
    });
    // No Name: a deleted secret's name stays taken while it waits out its recovery window.
    expect(apiKey?.Properties.Name).toBeUndefined();
    // No value either: the first put makes the first version.
    expect(apiKey?.Properties.SecretString).toBeUndefined();
    expect(apiKey?.Properties.GenerateSecretString).toBeUndefined();
    expect(apiKey?.DeletionPolicy).toBe("Delete");
    expect(t.Outputs[secretOutputKey("api-key")]).toEqual({
      Description: "secret api-key",
      Value: { Ref: "ApiKeySecret" },
    });
    expect(t.Outputs[secretOutputKey("db-1")]).toEqual({ Description: "secret db-1", Value: { Ref: "xDbZ1Secret" } });
  });

  it("grant GetSecretValue for access and PutSecretValue for put, on that secret only, to the services that hold the permission", () => {
    const t = template(spec());
    const secretStatements = (role: string) =>
      statementsOf(t, role).filter((s) => JSON.stringify(s.Action).includes("secretsmanager:"));
    expect(secretStatements("ReaderRole")).toEqual([
      { Effect: "Allow", Action: ["secretsmanager:GetSecretValue"], Resource: { Ref: "ApiKeySecret" } },
      {
        Effect: "Allow",
        Action: ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"],
        Resource: { Ref: "xDbZ1Secret" },
      },
    ]);
    expect(secretStatements("WriterRole")).toEqual([
      { Effect: "Allow", Action: ["secretsmanager:PutSecretValue"], Resource: { Ref: "ApiKeySecret" } },
    ]);
    expect(secretStatements("IdleRole")).toEqual([]);
  });

  it("give each function the ARNs of its service's secrets in NITRIC_LIKE_SECRETS, and none to a service without any", () => {
    const t = template(spec());
    const variables = (fn: string) =>
      (t.Resources[fn]?.Properties.Environment as { Variables: Record<string, unknown> } | undefined)?.Variables ?? {};
    expect(variables("ReaderFunction").NITRIC_LIKE_SECRETS).toEqual({
      "Fn::Sub": JSON.stringify({ "api-key": `\${ApiKeySecret}`, "db-1": `\${xDbZ1Secret}` }),
    });
    expect(variables("WriterFunction").NITRIC_LIKE_SECRETS).toEqual({
      "Fn::Sub": JSON.stringify({ "api-key": `\${ApiKeySecret}` }),
    });
    // An app without secrets keeps the environment (and so the functions) it had.
    expect(variables("IdleFunction").NITRIC_LIKE_SECRETS).toBeUndefined();
  });

  it("give each function what the collect pass saw its service declare in NITRIC_LIKE_DECLARED, which its runtime reads back", () => {
    const t = template(spec());
    const variables = (fn: string) =>
      (t.Resources[fn]?.Properties.Environment as { Variables: Record<string, string> } | undefined)?.Variables ?? {};
    const declared = (service: string) =>
      readBindings(deployedEnvironment(t, `${logicalName(service)}Function`)).declared;
    expect(declared("reader")).toEqual({
      file: "services/reader.ts",
      resources: [
        { kind: "secret", name: "api-key", permissions: ["access"] },
        { kind: "secret", name: "db-1", permissions: ["access", "put"] },
      ],
    });
    expect(declared("writer")).toEqual({
      file: "services/writer.ts",
      resources: [{ kind: "secret", name: "api-key", permissions: ["put"] }],
    });
    // Nothing declared: every declaration it makes once started is a late one.
    expect(declared("idle")).toEqual({ file: "services/idle.ts", resources: [] });
    // The secrets NITRIC_LIKE_SECRETS names are not named again: a digit each says the grant.
    expect(JSON.parse(variables("ReaderFunction").NITRIC_LIKE_DECLARED ?? "")).toEqual({
      file: "services/reader.ts",
      grants: { secret: "13" },
    });
  });

  it("keep their logical ids apart from a kv store and a socket of the same name", () => {
    const base = app(["key"], ["key"], ["svc"]);
    const t = template({
      ...base,
      resources: [...base.resources, { kind: "secret", name: "key", declaredBy: ["svc"] }],
      policies: [
        ...base.policies,
        { service: "svc", resource: { kind: "secret", name: "key" }, permissions: ["access"] },
      ],
    });
    expect(ofType(t, "AWS::SecretsManager::Secret")).toEqual(["KeySecret"]);
    expect(ofType(t, "AWS::DynamoDB::Table")).toContain("KeyKvTable");
    expect(Object.keys(t.Outputs).sort()).toEqual(["SecretKey", "WebsocketKey"]);
  });
});

/** A valid route name: a letter, then letters of both cases, digits, `_`, `-`, `.` and `:`. */
const routeName = fc
  .tuple(fc.constantFrom(..."aAjJxXzZqQ"), fc.array(fc.constantFrom(..."aAbBjJxXzZ019_-.:"), { maxLength: 12 }))
  .map(([first, rest]) => first + rest.join(""))
  .filter((name) => routeNameProblem("s", name) === undefined);

/** `spec` with these message routes (action → service) on socket `socket`, sorted as the spec sorts them. */
function withRoutes(spec: Spec, socket: string, routes: [string, string][]): Spec {
  return {
    ...spec,
    resources: spec.resources.map((r) =>
      r.kind === "websocket" && r.name === socket
        ? {
            ...r,
            routes: routes
              .map(([action, service]) => ({ action, service }))
              .sort((a, b) => (a.action < b.action ? -1 : a.action > b.action ? 1 : 0)),
          }
        : r,
    ),
  };
}

/** Each route of a template, by its RouteKey (the $ routes left out), with its logical id. */
function actionRoutes(t: Template): Map<string, string> {
  const byKey = new Map<string, string>();
  for (const id of ofType(t, "AWS::ApiGatewayV2::Route")) {
    const key = t.Resources[id]?.Properties.RouteKey as string;
    if (!key.startsWith("$")) byKey.set(key, id);
  }
  return byKey;
}

describe("message routes (socket.route)", () => {
  it("write each action one to one into a logical id, letters of both cases and every separator told apart (property)", () => {
    fc.assert(
      fc.property(routeName, routeName, (a, b) => {
        fc.pre(a !== b);
        expect(routeLogicalName(a)).toMatch(/^[A-Z][A-Za-z0-9]*$/);
        // Apart even were ids compared without case.
        expect(routeLogicalName(a).toLowerCase()).not.toBe(routeLogicalName(b).toLowerCase());
      }),
      { numRuns: 5000 },
    );
    const tricky = ["join", "Join", "JOIN", "jOin", "a.b", "a-b", "a_b", "a:b", "ab", "aB", "x", "X", "x0", "X0", "xX"];
    expect(new Set(tricky.map((n) => routeLogicalName(n).toLowerCase())).size).toBe(tricky.length);
    expect(routeLogicalName("join")).toBe("Join");
    expect(routeLogicalName("chat.say")).toBe("ChatX3say");
  });

  it("are routes of the API, keyed by the action, to their service's function, two-way, selected by $request.body.action", () => {
    const spec = withRoutes(app(["chat"], [], ["app", "rooms"]), "chat", [
      ["join", "rooms"],
      ["leave", "rooms"],
      ["say", "app"],
    ]);
    const t = template(spec);
    expect(t.Resources.ChatApi?.Properties.RouteSelectionExpression).toBe(ROUTE_SELECTION_EXPRESSION);
    expect(ROUTE_SELECTION_EXPRESSION).toBe("$request.body.action");
    const routes = actionRoutes(t);
    expect([...routes.keys()].sort()).toEqual(["join", "leave", "say"]);
    expect(routes.get("join")).toBe("ChatJoinActionRoute");
    const integrationOf = (action: string) => {
      const target = t.Resources[routes.get(action) as string]?.Properties.Target as { "Fn::Sub": string };
      return /^integrations\/\$\{(\w+)\}$/.exec(target["Fn::Sub"])?.[1] as string;
    };
    // One integration per (socket, service): join and leave share rooms'.
    expect(integrationOf("join")).toBe(integrationOf("leave"));
    expect(integrationOf("say")).not.toBe(integrationOf("join"));
    const uri = (action: string) => JSON.stringify(t.Resources[integrationOf(action)]?.Properties.IntegrationUri);
    expect(uri("join")).toContain(`\${RoomsFunction.Arn}`);
    expect(uri("say")).toContain(`\${AppFunction.Arn}`);
    expect(t.Resources[integrationOf("join")]?.Properties.IntegrationType).toBe("AWS_PROXY");
    for (const [action, id] of routes) {
      expect(t.Resources[id]?.Properties).toMatchObject({
        ApiId: { Ref: "ChatApi" },
        RouteKey: action,
        RouteResponseSelectionExpression: "$default",
      });
      // Its route response: a handler's single text reply rides back, as on $default.
      const responses = ofType(t, "AWS::ApiGatewayV2::RouteResponse").filter(
        (r) => JSON.stringify(t.Resources[r]?.Properties.RouteId) === JSON.stringify({ Ref: id }),
      );
      expect(responses).toHaveLength(1);
      expect(t.Resources[responses[0] as string]?.Properties.RouteResponseKey).toBe("$default");
    }
    // API Gateway may invoke rooms' function, which handles no event of the socket, only routes.
    const permitted = ofType(t, "AWS::Lambda::Permission").map((id) =>
      JSON.stringify(t.Resources[id]?.Properties.FunctionName),
    );
    expect(permitted.sort()).toEqual(
      ['{"Fn::GetAtt":["AppFunction","Arn"]}', '{"Fn::GetAtt":["RoomsFunction","Arn"]}'].sort(),
    );
    // The deployment waits for every route and route response.
    const [deployment] = ofType(t, "AWS::ApiGatewayV2::Deployment");
    const waits = t.Resources[deployment as string]?.DependsOn ?? [];
    for (const id of routes.values()) expect(waits).toContain(id);
    expect(waits.filter((id) => t.Resources[id]?.Type === "AWS::ApiGatewayV2::RouteResponse")).toHaveLength(4);
  });

  it("give join and Join, a.b and a-b routes of their own, with ids no other route set changes (property)", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(routeName, { minLength: 1, maxLength: 8 }),
        fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }),
        (actions, kept) => {
          const spec = (names: string[]) =>
            withRoutes(
              app(["chat", "chat-join"], [], ["app", "other"]),
              "chat",
              names.map((n, i) => [n, i % 2 === 0 ? "app" : "other"]),
            );
          const full = template(spec(actions));
          const routes = actionRoutes(full);
          expect(routes.size).toBe(actions.length);
          expect(ofType(full, "AWS::ApiGatewayV2::RouteResponse")).toHaveLength(2 + actions.length);
          for (const id of Object.keys(full.Resources)) expect(id).toMatch(/^[A-Za-z0-9]{1,255}$/);
          // A route keeps its logical id whatever other routes the socket has (CloudFormation
          // would replace a route whose id changed).
          const some = actions.filter((_, i) => kept[i]);
          const part = actionRoutes(template(spec(some)));
          for (const action of some) expect(part.get(action)).toBe(routes.get(action));
        },
      ),
      { numRuns: 500 },
    );
    const t = template(
      withRoutes(app(["chat"], [], ["app"]), "chat", [
        ["join", "app"],
        ["Join", "app"],
        ["a.b", "app"],
        ["a-b", "app"],
      ]),
    );
    expect([...actionRoutes(t).values()].sort()).toEqual([
      "ChatAX2bActionRoute",
      "ChatAX3bActionRoute",
      "ChatJoinActionRoute",
      "ChatXJoinActionRoute",
    ]);
  });

  it("make a new Deployment when a route is added, removed or moved to another service, and not for new code", () => {
    const deploymentOf = (t: Template) => ofType(t, "AWS::ApiGatewayV2::Deployment");
    const spec = (routes: [string, string][]) => withRoutes(app(["chat"], [], ["a", "b"]), "chat", routes);
    const base = deploymentOf(template(spec([["join", "a"]])));
    const variants = [
      spec([]),
      spec([
        ["join", "a"],
        ["leave", "a"],
      ]),
      spec([["join", "b"]]),
      spec([["Join", "a"]]),
    ].map((s) => deploymentOf(template(s))[0]);
    expect(new Set([base[0], ...variants]).size).toBe(5);
    expect(deploymentOf(template(spec([["join", "a"]]), { a: "k/a-2.zip", b: "k/b-2.zip" }))).toEqual(base);
  });

  it("are selected by $request.body.<routeBy> for a socket that gives routeBy, a path too, whose change makes a new Deployment", () => {
    const deploymentOf = (t: Template) => ofType(t, "AWS::ApiGatewayV2::Deployment");
    const base = withRoutes(app(["chat"], [], ["a"]), "chat", [["join", "a"]]);
    const typed = (routeBy: string | undefined): Spec => ({
      ...base,
      resources: base.resources.map((r) => (r.kind === "websocket" && routeBy !== undefined ? { ...r, routeBy } : r)),
    });
    expect(template(typed("type")).Resources.ChatApi?.Properties.RouteSelectionExpression).toBe("$request.body.type");
    expect(template(typed(undefined)).Resources.ChatApi?.Properties.RouteSelectionExpression).toBe(
      "$request.body.action",
    );
    // A path into the message is API Gateway's JSON path, written as given.
    expect(template(typed("meta.type")).Resources.ChatApi?.Properties.RouteSelectionExpression).toBe(
      "$request.body.meta.type",
    );
    const ids = [undefined, "type", "kind", "meta.type"].map((by) => deploymentOf(template(typed(by)))[0]);
    expect(new Set(ids).size).toBe(4);
  });

  it("tell each function which routes it serves, in NITRIC_LIKE_WEBSOCKETS, and grant a route's service the socket", () => {
    const spec = withRoutes(app(["chat"], [], ["app", "rooms", "idle"], { connect: "app", message: "app" }), "chat", [
      ["join", "rooms"],
      ["leave", "rooms"],
      ["say", "app"],
    ]);
    const t = template(spec);
    // The environment as the function sees it: Fn::Sub's references made physical ids.
    const bindingsOf = (fn: string) => {
      const variables = t.Resources[fn]?.Properties.Environment as { Variables: Record<string, unknown> };
      const env: Record<string, string> = {};
      for (const [name, value] of Object.entries(variables.Variables)) {
        const text = typeof value === "string" ? value : ((value as { "Fn::Sub"?: string })["Fn::Sub"] ?? "x");
        env[name] = text.replace(/\$\{[^}]+\}/g, "x");
      }
      return readBindings(env);
    };
    expect(bindingsOf("RoomsFunction").websockets.chat).toMatchObject({ events: [], routes: ["join", "leave"] });
    expect(bindingsOf("AppFunction").websockets.chat).toMatchObject({
      events: ["connect", "message"],
      routes: ["say"],
    });
    expect(bindingsOf("IdleFunction").websockets.chat).toBeUndefined();
    // A function without routes keeps the environment it had (no "routes" key): no update for apps without them.
    const plain = template(app(["chat"], [], ["app"]));
    expect(JSON.stringify(plain.Resources.AppFunction?.Properties.Environment)).not.toContain("routes");
    // rooms reaches the socket as a message handler's service does: it may post and keep rooms.
    const statements = JSON.stringify(t.Resources.RoomsRole?.Properties.Policies);
    expect(statements).toContain("execute-api:ManageConnections");
    expect(statements).toContain('"dynamodb:LeadingKeys":["chat","chat#*"]');
    expect(ofType(t, "AWS::Lambda::EventInvokeConfig").map((id) => t.Resources[id]?.Properties.FunctionName)).toEqual([
      { Ref: "AppFunction" },
      { Ref: "RoomsFunction" },
    ]);
  });
});

describe("a socket's custom domain", () => {
  const certificate = "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d";
  const spec = app(["chat", "admin"], [], ["svc"]);
  const withDomains = (domains: Record<string, { name: string; certificate: string; hostedZone?: string }>) =>
    buildTemplate({ spec, artifactKeys: { svc: "k/svc.zip" }, domains }) as Template;

  it("is a regional domain with the certificate, mapped to the socket's stage, its URL the socket's output and socket.url()", () => {
    const t = withDomains({ chat: { name: "ws.example.com", certificate } });
    expect(t.Resources.ChatDomain).toEqual({
      Type: "AWS::ApiGatewayV2::DomainName",
      Properties: {
        DomainName: "ws.example.com",
        DomainNameConfigurations: [
          { CertificateArn: certificate, EndpointType: "REGIONAL", SecurityPolicy: "TLS_1_2" },
        ],
      },
    });
    expect(t.Resources.ChatDomainMapping).toEqual({
      Type: "AWS::ApiGatewayV2::ApiMapping",
      Properties: { ApiId: { Ref: "ChatApi" }, DomainName: { Ref: "ChatDomain" }, Stage: "live" },
      DependsOn: ["ChatStage"],
    });
    expect(t.Resources.ChatStage?.Properties.StageName).toBe("live");
    expect(t.Outputs.WebsocketChat).toEqual({ Description: "websocket chat", Value: "wss://ws.example.com" });
    // No hosted zone: no record, and an output with the name to point the DNS at.
    expect(ofType(t, "AWS::Route53::RecordSet")).toEqual([]);
    expect(t.Outputs.DomainTargetChat?.Value).toEqual({ "Fn::GetAtt": ["ChatDomain", "RegionalDomainName"] });
    expect(t.Outputs.ApiUrlChat?.Value).toEqual({
      "Fn::Sub": "wss://${ChatApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/live",
    });
    // The other socket keeps its API's URL, and no domain.
    expect(t.Outputs.WebsocketAdmin?.Value).toEqual({
      "Fn::Sub": "wss://${AdminApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/live",
    });
    expect(ofType(t, "AWS::ApiGatewayV2::DomainName")).toEqual(["ChatDomain"]);
    // The function's bindings: url() answers the domain; the Management API stays the API's own.
    const { websockets } = readBindings(deployedEnvironment(t, "SvcFunction"));
    expect(websockets.chat?.url).toBe("wss://ws.example.com");
    expect(websockets.chat?.endpoint).toBe("https://chatapi000.execute-api.cn-north-1.amazonaws.com.cn/live");
    expect(websockets.admin?.url).toBe("wss://adminapi00.execute-api.cn-north-1.amazonaws.com.cn/live");
    expect(websockets.admin?.endpoint).toBe("https://adminapi00.execute-api.cn-north-1.amazonaws.com.cn/live");
  });

  it("adds the name's alias record to the hosted zone when one is given", () => {
    const t = withDomains({ chat: { name: "ws.example.com", certificate, hostedZone: "Z0123456789ABC" } });
    expect(t.Resources.ChatDomainRecord).toEqual({
      Type: "AWS::Route53::RecordSet",
      Properties: {
        HostedZoneId: "Z0123456789ABC",
        Name: "ws.example.com",
        Type: "A",
        AliasTarget: {
          DNSName: { "Fn::GetAtt": ["ChatDomain", "RegionalDomainName"] },
          HostedZoneId: { "Fn::GetAtt": ["ChatDomain", "RegionalHostedZoneId"] },
        },
      },
    });
    expect(t.Outputs.DomainTargetChat).toBeUndefined();
  });

  it("changes nothing else: the template without domains is the same but for the domain's resources and outputs", () => {
    const plain = template(spec);
    const t = withDomains({ chat: { name: "ws.example.com", certificate } });
    const added = Object.keys(t.Resources).filter((id) => !(id in plain.Resources));
    expect(added.sort()).toEqual(["ChatDomain", "ChatDomainMapping"]);
    for (const id of Object.keys(plain.Resources)) {
      if (id === "SvcFunction") continue; // its bindings carry the URL
      expect(t.Resources[id], id).toEqual(plain.Resources[id]);
    }
  });
});

describe("a function's environment", () => {
  it("is held to Lambda's 4 KB whatever fills it: a service allowed many stores is refused at build, with the fix", () => {
    // No --env-from: the runtime's own bindings alone (a table's name per store) go over.
    const stores = Array.from({ length: 60 }, (_, i) => `orders-by-customer-${String(i).padStart(2, "0")}`);
    const build = () => template(app(["socket"], stores, ["svc"]));
    expect(build).toThrow(
      /^the function of service "svc" would have about \d+ bytes of environment variables \(nitric-like's own: NITRIC_LIKE_KV_TABLES \d+, [^)]*\), over Lambda's 4096 for a function, which it would refuse mid-deploy; split the service/,
    );
    // Under the limit, the same app builds.
    expect(() => template(app(["socket"], stores.slice(0, 10), ["svc"]))).not.toThrow();
    // A reference counts what it can resolve to, not a flat 96 bytes: a service handling five
    // sockets (three references in each one's URLs) is far under the limit, and builds.
    expect(() => template(app(["a", "b", "c", "d", "e"], [], ["svc"]))).not.toThrow();
  });

  it("says what the service declared without naming again what the other variables name, so one function manages and handles 30 sockets", () => {
    // NITRIC_LIKE_DECLARED named each socket, store and secret again with its kind and permissions
    // (["websocket","<name>",["manage"]]): 22 sockets of 34-character names fitted, 31 stores of 21.
    const sockets = Array.from(
      { length: 30 },
      (_, i) => `notifications-for-customer-room-${String(i).padStart(2, "0")}`,
    );
    const stores = Array.from({ length: 45 }, (_, i) => `orders-by-customer-${String(i).padStart(2, "0")}`);
    const managed = (spec: Spec): Spec => ({
      ...spec,
      policies: [
        ...spec.policies,
        ...sockets.map((name) => ({
          service: "svc",
          resource: { kind: "websocket" as const, name },
          permissions: ["manage" as const],
        })),
      ],
    });
    for (const spec of [managed(app(sockets, [], ["svc"])), app(["socket"], stores, ["svc"])]) {
      const env = deployedEnvironment(template(spec), "SvcFunction");
      const ours = spec.resources.filter((r) => r.declaredBy.includes("svc"));
      for (const r of ours) expect(env.NITRIC_LIKE_DECLARED).not.toContain(JSON.stringify(r.name));
      // The runtime reads back every resource with its grant.
      const declared = readBindings(env).declared?.resources ?? [];
      expect(declared).toHaveLength(ours.length);
      for (const r of ours) {
        const policy = spec.policies.find((p) => p.resource.kind === r.kind && p.resource.name === r.name);
        // Sorted, as the spec sorts a policy's permissions (app() leaves them unsorted).
        const permissions = [...(policy?.permissions ?? [])].sort();
        expect(declared).toContainEqual({ kind: r.kind, name: r.name, permissions });
      }
    }
  });

  it("carries each socket's API id, not its URLs, so one function handles 25 sockets, and the runtime makes the URLs", () => {
    // Each socket's wss:// URL and https:// endpoint took some 160 bytes of the 4 KB: 14 sockets of
    // 6-character names fitted, 13 of 21. Made from its API id and one NITRIC_LIKE_WEBSOCKET_ENDPOINT,
    // 37 and 29 do.
    const sockets = Array.from({ length: 25 }, (_, i) => `notifications-room-${String(i).padStart(2, "0")}`);
    const t = template(app(sockets, [], ["svc"]));
    const env = deployedEnvironment(t, "SvcFunction");
    const entry = JSON.parse(env.NITRIC_LIKE_WEBSOCKETS ?? "{}")["notifications-room-07"];
    expect(entry).toEqual({ apiId: expect.any(String), events: ["connect", "disconnect", "message"] });
    const { websockets } = readBindings(env);
    expect(Object.keys(websockets)).toHaveLength(25);
    const { apiId, url, endpoint } = websockets["notifications-room-07"] ?? {};
    expect(endpoint).toBe(`https://${apiId}.execute-api.cn-north-1.amazonaws.com.cn/live`);
    expect(url).toBe(`wss://${apiId}.execute-api.cn-north-1.amazonaws.com.cn/live`);
    // A template made before (each entry's own url and endpoint, no NITRIC_LIKE_WEBSOCKET_ENDPOINT) reads as it did.
    const old = readBindings({
      NITRIC_LIKE_SERVICE: "svc",
      NITRIC_LIKE_WEBSOCKETS: JSON.stringify({
        chat: { apiId: "a1", url: "wss://w.example.com", endpoint: "https://a1.example.com/live", events: [] },
      }),
    });
    expect(old.websockets.chat).toMatchObject({ url: "wss://w.example.com", endpoint: "https://a1.example.com/live" });
    // An entry with no endpoint and nothing to make one from is said, with the fix.
    expect(() =>
      readBindings({
        NITRIC_LIKE_SERVICE: "svc",
        NITRIC_LIKE_WEBSOCKETS: JSON.stringify({ chat: { apiId: "a1", events: [] } }),
      }),
    ).toThrow(
      /NITRIC_LIKE_WEBSOCKETS\["chat"\] has no endpoint, .*; it is set by the template, so build and deploy again/,
    );
  });
});
