/**
 * What an update's change set replaces that a user would notice, said before it is executed.
 * CloudFormation replaces a resource (makes a new one, moves every reference to it, then deletes
 * the old one) when a property that cannot be updated in place changes: a function given a
 * FunctionName (a service coming onto a ring of late-disconnect hand-overs, lateDisconnectNamed),
 * an API's ProtocolType, a custom domain's name. For a function that is invisible to clients; for
 * an API it is not: the new one has another id, so another URL, and the old one's connections close.
 * Tables and secrets are said elsewhere (up asks before a table's items go, and names each secret).
 */
import type { Change, ResourceChange } from "@aws-sdk/client-cloudformation";
import { logicalName } from "../build/template.js";

type TemplateResources = Record<string, { Type?: unknown; Properties?: Record<string, unknown> } | undefined>;

/** A resource of the new template by logical id (ids come from CloudFormation: never an object's own key by chance). */
function resourceOf(
  template: object,
  id: string,
): { Type?: unknown; Properties?: Record<string, unknown> } | undefined {
  const resources = (template as { Resources?: TemplateResources }).Resources;
  if (resources === undefined || resources === null || !Object.hasOwn(resources, id)) return undefined;
  return resources[id];
}

/** The name in a description the template writes: `nitric-like <kind> "<name>" of project ...`. */
function describedName(template: object, id: string, kind: "service" | "websocket"): string | undefined {
  const description = resourceOf(template, id)?.Properties?.Description;
  if (typeof description !== "string") return undefined;
  const match = new RegExp(`^nitric-like ${kind} "([^"]*)"`).exec(description);
  return match?.[1];
}

/** The socket whose API a custom domain's mapping maps (the domain's logical id `domain`). */
function socketOfDomain(template: object, domain: string): { socket: string; name: string } | undefined {
  const resources = (template as { Resources?: TemplateResources }).Resources ?? {};
  const props = resourceOf(template, domain)?.Properties;
  const name = typeof props?.DomainName === "string" ? props.DomainName : undefined;
  for (const r of Object.values(resources)) {
    if (r?.Type !== "AWS::ApiGatewayV2::ApiMapping") continue;
    const p = r.Properties ?? {};
    if ((p.DomainName as { Ref?: unknown } | undefined)?.Ref !== domain) continue;
    const api = (p.ApiId as { Ref?: unknown } | undefined)?.Ref;
    const socket = typeof api === "string" ? describedName(template, api, "websocket") : undefined;
    if (socket !== undefined && name !== undefined) return { socket, name };
  }
  return undefined;
}

/** The custom domain clients of `socket` use, when the template gives it one (its URL output is then `wss://<domain>`). */
function customUrlOf(template: object, socket: string): string | undefined {
  const value = outputOf(template, `Websocket${logicalName(socket)}`)?.Value;
  return typeof value === "string" ? value : undefined;
}

/** An output of the new template by key. */
function outputOf(template: object, key: string): { Value?: unknown } | undefined {
  const outputs = (template as { Outputs?: Record<string, { Value?: unknown } | undefined> }).Outputs;
  if (outputs === undefined || outputs === null || !Object.hasOwn(outputs, key)) return undefined;
  return outputs[key];
}

/**
 * Why the change set replaces a resource, from its Details: the properties whose change
 * recreates it (RequiresRecreation Always, or Conditionally), and what caused a change it did not
 * make directly; else its Scope. Undefined when the change set says nothing of why.
 */
function why(change: ResourceChange): string | undefined {
  const recreating = new Set<string>();
  const causes = new Set<string>();
  for (const d of change.Details ?? []) {
    const t = d.Target;
    if (t?.RequiresRecreation !== "Always" && t?.RequiresRecreation !== "Conditionally") continue;
    const name = t.Name ?? t.Attribute;
    if (name === undefined) continue;
    recreating.add(name);
    // A change it takes from another resource or a parameter (DirectModification: this template's own).
    if (d.ChangeSource !== "DirectModification" && d.CausingEntity !== undefined) causes.add(d.CausingEntity);
  }
  if (recreating.size > 0) {
    const list = [...recreating];
    const cause = causes.size === 0 ? "" : `, as it refers to ${[...causes].join(", ")}`;
    return `its ${list.join(", ")} ${list.length === 1 ? "changes" : "change"}${cause}`;
  }
  const scope = change.Scope ?? [];
  if (scope.length > 0) return `its ${scope.map((s) => s.toLowerCase()).join(", ")} change`;
  return undefined;
}

/**
 * One line per function, API or custom domain that `changes` (an update's change set, as
 * DescribeChangeSet returns it) replace, or may replace (Replacement "Conditional"), saying
 * whose it is, why when the change set says, and what it means for the app's clients. `template`
 * is the template being deployed, which names each resource's service or socket.
 */
export function replacementNotes(changes: readonly Change[], template: object): string[] {
  const lines: string[] = [];
  for (const { ResourceChange: r } of changes) {
    if (r === undefined || r.Action !== "Modify" || r.LogicalResourceId === undefined) continue;
    if (r.Replacement !== "True" && r.Replacement !== "Conditional") continue;
    const sure = r.Replacement === "True";
    const id = r.LogicalResourceId;
    const reason = why(r);
    const because = reason === undefined ? "" : ` (${reason})`;
    const is = sure ? "is replaced" : "may be replaced";
    if (r.ResourceType === "AWS::Lambda::Function") {
      const service = describedName(template, id, "service");
      const whose = service === undefined ? `function ${id}` : `service "${service}": its function`;
      lines.push(
        `${whose} ${is}${because}: ${sure ? "" : "if it is, "}a new function is made, then the old one deleted; its name and ARN change, and events under way finish on the old one`,
      );
    } else if (r.ResourceType === "AWS::ApiGatewayV2::Api") {
      const socket = describedName(template, id, "websocket");
      const whose = socket === undefined ? `API ${id}` : `websocket "${socket}": its API`;
      const custom = socket === undefined ? undefined : customUrlOf(template, socket);
      const meaning =
        custom === undefined
          ? "its URL changes: clients must use the new URL printed below"
          : `its API Gateway URL changes ("nitric-like outputs" shows the new one); clients of ${custom} are not affected, as the domain is mapped to the new API`;
      lines.push(
        `${whose} ${is}${because}: ${sure ? "" : "if it is, "}${meaning}; connections open on the old API are closed when it is deleted`,
      );
    } else if (r.ResourceType === "AWS::ApiGatewayV2::DomainName") {
      const owner = socketOfDomain(template, id);
      const whose =
        owner === undefined ? `custom domain ${id}` : `websocket "${owner.socket}": its custom domain ${owner.name}`;
      // Without a hosted zone the template writes the target as an output, and up prints the
      // CNAME to make; with one, the stack's alias record follows the new domain by itself.
      const byHand =
        owner !== undefined && outputOf(template, `DomainTarget${logicalName(owner.socket)}`) !== undefined;
      const dns =
        owner === undefined
          ? "a DNS record naming the old target must name the new one"
          : byHand
            ? "its CNAME record must be pointed at the new target printed below"
            : "the alias record in its hosted zone follows by itself";
      lines.push(`${whose} ${is}${because}: ${sure ? "" : "if it is, "}its regional target changes: ${dns}`);
    }
  }
  return lines;
}
