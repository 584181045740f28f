// What up says before it executes an update that replaces a function, an API or a custom domain.
// moto's change sets carry no Replacement or Details (only Action, logical id and type), so these
// run replacementNotes on templates the build writes and on changes in the shape DescribeChangeSet
// returns them (@aws-sdk/client-cloudformation's Change), as CloudFormation reports each case.
import type { Change } from "@aws-sdk/client-cloudformation";
import type { Spec, WebsocketEvent } from "@nitric-like/spec";
import { describe, expect, it } from "vitest";
import { buildTemplate } from "../src/build/template.js";
import { replacementNotes } from "../src/deploy/replacements.js";

/** An app whose sockets each have the handlers given, by event, one service per event. */
function app(sockets: Record<string, Partial<Record<WebsocketEvent, string>>>): Spec {
  const services = [...new Set(Object.values(sockets).flatMap((h) => Object.values(h)))].sort();
  return {
    name: "chat",
    services: services.map((name) => ({ name, file: `services/${name}.ts` })),
    resources: Object.entries(sockets).map(([name, handlers]) => ({
      kind: "websocket" as const,
      name,
      declaredBy: [services[0] ?? "svc"],
      handlers,
    })),
    policies: [],
  };
}

type Template = { Resources: Record<string, { Type: string; Properties: Record<string, unknown> }> };

function template(spec: Spec, domains?: Parameters<typeof buildTemplate>[0]["domains"]): Template {
  return buildTemplate({
    spec,
    artifactKeys: Object.fromEntries(spec.services.map((s) => [s.name, `k/${s.name}.zip`])),
    ...(domains === undefined ? {} : { domains }),
  }) as unknown as Template;
}

/** The logical id of the resource of `type` whose Description names `name`. */
function idOf(t: Template, type: string, name: string): string {
  const id = Object.keys(t.Resources).find(
    (k) => t.Resources[k]?.Type === type && String(t.Resources[k]?.Properties.Description).includes(`"${name}"`),
  );
  if (id === undefined) throw new Error(`no ${type} for ${name}`);
  return id;
}

/** A Modify that replaces a resource, as DescribeChangeSet has it, for a change to `property`. */
function replaced(id: string, type: string, property: string, replacement: "True" | "Conditional" = "True"): Change {
  return {
    Type: "Resource",
    ResourceChange: {
      Action: "Modify",
      LogicalResourceId: id,
      PhysicalResourceId: `${id.toLowerCase()}-physical`,
      ResourceType: type,
      Replacement: replacement,
      Scope: ["Properties"],
      Details: [
        {
          Target: {
            Attribute: "Properties",
            Name: property,
            RequiresRecreation: replacement === "True" ? "Always" : "Conditionally",
          },
          Evaluation: "Static",
          ChangeSource: "DirectModification",
        },
      ],
    },
  };
}

describe("an update's replacements", () => {
  // Two services each handling the connect of a socket whose disconnect the other handles: a ring.
  const before = app({ lobby: { connect: "alpha", disconnect: "beta", message: "alpha" } });
  const after = app({
    lobby: { connect: "alpha", disconnect: "beta", message: "alpha" },
    rooms: { connect: "beta", disconnect: "alpha", message: "beta" },
  });

  it("name the service whose function a late-disconnect ring replaces, why, and what it means", () => {
    const old = template(before);
    const now = template(after);
    const fn = idOf(now, "AWS::Lambda::Function", "alpha");
    // The build's own change: the function had no name, and now has one, which CloudFormation replaces it for.
    expect(old.Resources[fn]?.Properties.FunctionName).toBeUndefined();
    expect(now.Resources[fn]?.Properties.FunctionName).toBeDefined();
    const changes: Change[] = [
      replaced(fn, "AWS::Lambda::Function", "FunctionName"),
      // Not replaced, or not a kind a user would care about: nothing said.
      { Type: "Resource", ResourceChange: { Action: "Modify", LogicalResourceId: fn, Replacement: "False" } },
      replaced(idOf(now, "AWS::Lambda::Function", "beta").replace("Function", "Role"), "AWS::IAM::Role", "Path"),
      { Type: "Resource", ResourceChange: { Action: "Add", LogicalResourceId: "RoomsApi", Replacement: "True" } },
    ];
    expect(replacementNotes(changes, now)).toEqual([
      'service "alpha": its function is replaced (its FunctionName changes): a new function is made, then the old one deleted; its name and ARN change, and events under way finish on the old one',
    ]);
  });

  it("say a socket's API replaced changes its URL, and that a conditional replacement may happen", () => {
    const now = template(after);
    const api = idOf(now, "AWS::ApiGatewayV2::Api", "lobby");
    expect(replacementNotes([replaced(api, "AWS::ApiGatewayV2::Api", "ProtocolType")], now)).toEqual([
      'websocket "lobby": its API is replaced (its ProtocolType changes): its URL changes: clients must use the new URL printed below; connections open on the old API are closed when it is deleted',
    ]);
    expect(replacementNotes([replaced(api, "AWS::ApiGatewayV2::Api", "ProtocolType", "Conditional")], now)).toEqual([
      'websocket "lobby": its API may be replaced (its ProtocolType changes): if it is, its URL changes: clients must use the new URL printed below; connections open on the old API are closed when it is deleted',
    ]);
  });

  it("say why from what caused a change when the change set names it, else from its scope", () => {
    const now = template(after);
    const fn = idOf(now, "AWS::Lambda::Function", "beta");
    const caused: Change = {
      Type: "Resource",
      ResourceChange: {
        Action: "Modify",
        LogicalResourceId: fn,
        ResourceType: "AWS::Lambda::Function",
        Replacement: "Conditional",
        Scope: ["Properties"],
        Details: [
          {
            Target: { Attribute: "Properties", Name: "FunctionName", RequiresRecreation: "Conditionally" },
            Evaluation: "Dynamic",
            ChangeSource: "ResourceAttribute",
            CausingEntity: "Something.Arn",
          },
          // The same property again, statically: said once.
          {
            Target: { Attribute: "Properties", Name: "FunctionName", RequiresRecreation: "Conditionally" },
            Evaluation: "Static",
            ChangeSource: "DirectModification",
          },
          { Target: { Attribute: "Properties", Name: "MemorySize", RequiresRecreation: "Never" } },
        ],
      },
    };
    const [line] = replacementNotes([caused], now);
    expect(line).toContain(
      'service "beta": its function may be replaced (its FunctionName changes, as it refers to Something.Arn): if it is,',
    );
    const bare: Change = {
      ResourceChange: {
        Action: "Modify",
        LogicalResourceId: fn,
        ResourceType: "AWS::Lambda::Function",
        Replacement: "True",
        Scope: ["Properties", "Tags"],
      },
    };
    expect(replacementNotes([bare], now)[0]).toMatch(
      /^service "beta": its function is replaced \(its properties, tags change\): /,
    );
  });

  it("keep a socket with a custom domain's clients apart from its API's URL, and say what a replaced domain needs", () => {
    const byHand = template(after, { lobby: { name: "ws.example.com", certificate: "arn:aws:acm:x" } });
    const api = idOf(byHand, "AWS::ApiGatewayV2::Api", "lobby");
    const domain = Object.keys(byHand.Resources).find(
      (k) => byHand.Resources[k]?.Type === "AWS::ApiGatewayV2::DomainName",
    );
    expect(domain).toBeDefined();
    expect(
      replacementNotes(
        [
          replaced(api, "AWS::ApiGatewayV2::Api", "ProtocolType"),
          replaced(domain as string, "AWS::ApiGatewayV2::DomainName", "DomainName"),
        ],
        byHand,
      ),
    ).toEqual([
      'websocket "lobby": its API is replaced (its ProtocolType changes): its API Gateway URL changes ("nitric-like outputs" shows the new one); clients of wss://ws.example.com are not affected, as the domain is mapped to the new API; connections open on the old API are closed when it is deleted',
      'websocket "lobby": its custom domain ws.example.com is replaced (its DomainName changes): its regional target changes: its CNAME record must be pointed at the new target printed below',
    ]);
    const zoned = template(after, {
      lobby: { name: "ws.example.com", certificate: "arn:aws:acm:x", hostedZone: "Z123" },
    });
    expect(
      replacementNotes([replaced(domain as string, "AWS::ApiGatewayV2::DomainName", "DomainName")], zoned),
    ).toEqual([
      'websocket "lobby": its custom domain ws.example.com is replaced (its DomainName changes): its regional target changes: the alias record in its hosted zone follows by itself',
    ]);
  });

  it("name a resource the template does not describe by its logical id, and read no inherited key", () => {
    expect(
      replacementNotes([replaced("constructor", "AWS::Lambda::Function", "FunctionName")], { Resources: {} }),
    ).toEqual([
      "function constructor is replaced (its FunctionName changes): a new function is made, then the old one deleted; its name and ARN change, and events under way finish on the old one",
    ]);
  });
});
