/**
 * The CloudFormation template of an app: per socket an API Gateway WebSocket API with `$connect`,
 * `$disconnect` and `$default` routes to the Lambda function of the service that handles each
 * event, a route per message route (`socket.route(action, ...)`) to its service's function (and a
 * `lambda:InvokeFunction` permission for EACH target function), a deployment and a stage; per kv
 * store a DynamoDB table; per secret a Secrets Manager secret; a table of live connections; per
 * service a function and a role that grants exactly what its `.allow()` calls and sockets need;
 * per socket with a custom domain, the domain, its mapping to the stage and, given a hosted zone,
 * its alias record.
 */

import { createHash } from "node:crypto";
import {
  functionTimeoutSeconds,
  type Permission,
  routeSelectionExpression,
  type SocketDomain,
  type Spec,
  type WebsocketEvent,
  type WebsocketSpec,
} from "@nitric-like/spec";
import { type GrantableKind, grantDigit } from "../runtime/grants.js";
import { MAX_FUNCTION_VARIABLES_BYTES, variablesBytes } from "./variables.js";

/** The stage every socket's API is deployed to: URLs end in `/live`. */
export const STAGE = "live";

/** How long a queued self-invocation (messages sent during connect) may wait before Lambda drops it. */
export const SELF_INVOKE_MAX_AGE_SECONDS = 300;

/**
 * How long CloudWatch keeps a function's logs (each function's own log group; AWS's default
 * group never expires). The log groups are deleted with the stack.
 */
export const LOG_RETENTION_DAYS = 14;

/** The route of each event. */
export const ROUTE_KEYS: Record<WebsocketEvent, string> = {
  connect: "$connect",
  disconnect: "$disconnect",
  message: "$default",
};

const KV_ACTIONS: Record<string, string[]> = {
  get: ["dynamodb:GetItem", "dynamodb:Query"],
  set: ["dynamodb:PutItem"],
  delete: ["dynamodb:DeleteItem"],
};

const SECRET_ACTIONS: Record<string, string[]> = {
  access: ["secretsmanager:GetSecretValue"],
  put: ["secretsmanager:PutSecretValue"],
};

/** The tag a secret carries: its name in the app (deploy.ts finds the stack's secrets by it). */
export const SECRET_TAG = "nitric-like:secret";

/** The output that holds a secret's ARN: `Secret<LogicalName>`, described "secret <name>". */
export function secretOutputKey(secret: string): string {
  return `Secret${logicalName(secret)}`;
}

type Json = unknown;
type Resources = Record<
  string,
  { Type: string; Properties: Record<string, Json>; DependsOn?: string[]; DeletionPolicy?: string }
>;

/** A PAY_PER_REQUEST table keyed by two string attributes. */
function table(hash: string, range: string, extra: Record<string, Json> = {}) {
  return {
    Type: "AWS::DynamoDB::Table",
    Properties: {
      BillingMode: "PAY_PER_REQUEST",
      AttributeDefinitions: [
        { AttributeName: hash, AttributeType: "S" },
        { AttributeName: range, AttributeType: "S" },
      ],
      KeySchema: [
        { AttributeName: hash, KeyType: "HASH" },
        { AttributeName: range, KeyType: "RANGE" },
      ],
      ...extra,
    },
  };
}

/**
 * A CloudFormation logical id from a lower-kebab name, one to one: `chat-service` → `ChatService`.
 * PascalCase alone is one to one unless a later word starts with a digit (`room1` and `room-1`
 * would both be `Room1`); such a name is written `x` + each word capitalised, a digit word marked
 * `Z` (and a word starting with `z` written `Zz`), so `room-1` → `xRoomZ1`. No other name makes an
 * id that starts with a lowercase letter, and names without such a word keep the ids they always had
 * (renaming a logical id would replace the resource, a kv table with its data).
 */
export function logicalName(name: string): string {
  const words = name.split(/[^a-zA-Z0-9]+/).filter(Boolean);
  const lossy = words.slice(1).some((w) => /^[0-9]/.test(w));
  if (!lossy) return words.map((w) => w[0]?.toUpperCase() + w.slice(1)).join("");
  const escaped = words.map((w) => {
    if (/^[0-9]/.test(w)) return `Z${w}`;
    if (w.startsWith("z")) return `Zz${w.slice(1)}`;
    return w[0]?.toUpperCase() + w.slice(1);
  });
  return `x${escaped.join("")}`;
}

/** The escape of routeLogicalName: a letter that stands for itself only when written "X0". */
const ROUTE_ESCAPES = new Map([
  ["x", "X0"],
  ["_", "X1"],
  ["-", "X2"],
  [".", "X3"],
  [":", "X4"],
]);

/**
 * A message route's name (`join`, `Join`, `chat.say`, `a-b`: letters of both cases, digits, `_`,
 * `-`, `.`, `:`; see ROUTE_NAME_PATTERN) as the alphanumeric part of a logical id, one to one, even
 * were logical ids compared without case: a lowercase letter (but `x`) and a digit stand for
 * themselves, an uppercase letter is `X` and the letter, `x` is `X0`, `_` `X1`, `-` `X2`, `.` `X3`
 * and `:` `X4`; then the first character is made uppercase (a name starts with a letter, and the
 * escape starts with the `X` no plain character is). So `join` → `Join`, `Join` → `XJoin`,
 * `chat.say` → `ChatX3say`, `a-b` → `AX2b`, `sendMessage` → `SendXMessage`.
 */
export function routeLogicalName(action: string): string {
  let out = "";
  for (const c of action) {
    const escaped = ROUTE_ESCAPES.get(c);
    out += escaped ?? (c >= "A" && c <= "Z" ? `X${c}` : c);
  }
  return out.charAt(0).toUpperCase() + out.slice(1);
}

/** What the template needs besides the spec. */
export interface TemplateInput {
  spec: Spec;
  /** The S3 key of each service's zip (content-hashed). */
  artifactKeys: Record<string, string>;
  /** Function memory in MB. @default 512 */
  memoryMb?: number;
  /** A service's function memory in MB, over `memoryMb` (its `services:` entry's `memory`). */
  serviceMemoryMb?: Readonly<Record<string, number>>;
  /** Function timeout in seconds. @default 30, and always 5 s above the handler timeout */
  timeoutSeconds?: number;
  /** How long a handler may take to answer an event (NITRIC_LIKE_HANDLER_TIMEOUT_MS). @default the runtime's 5000 */
  handlerTimeoutMs?: number;
  /** Days each function's log group keeps its logs. @default LOG_RETENTION_DAYS */
  logRetentionDays?: number;
  /** The user's variables for every function (`--env-from`), names already checked (variables.ts). */
  variables?: Readonly<Record<string, string>>;
  /** Each socket's custom domain, by socket name (the project file's, for the environment built). */
  domains?: Readonly<Record<string, SocketDomain>>;
}

/**
 * Logical ids. logicalName is one to one and each kind has its own suffix, so two resources can
 * only meet when one kind's suffix ends another's name (a socket `x-function`'s route and a
 * service's function, say): the later one then takes a hash of its kind and name, and should even
 * that be taken, the build stops naming both rather than drop a resource.
 */
class Ids {
  private readonly used = new Map<string, string>();
  /** The id of the `kind` resource named by `parts` (a socket, or a socket and a service, ...). */
  id(kind: string, parts: string | string[], suffix: string): string {
    const names = typeof parts === "string" ? [parts] : parts;
    return this.made(kind, names, names.map(logicalName).join(""), suffix);
  }

  /**
   * The id of a socket's message route's resource: `<Socket><Action>Action<suffix>`, the action
   * written by routeLogicalName (one to one over route names, where logicalName would make `join`
   * and `Join`, or `a.b` and `a-b`, one id).
   */
  routeId(socket: string, action: string, suffix: string): string {
    return this.made("action", [socket, action], `${logicalName(socket)}${routeLogicalName(action)}`, suffix);
  }

  private made(kind: string, names: string[], base: string, suffix: string): string {
    // Names never hold "/", so the key tells (socket a-b, service c) from (socket a, service b-c).
    const key = `${kind}:${names.join("/")}`;
    let id = `${base}${suffix}`;
    let owner = this.used.get(id);
    if (owner !== undefined && owner !== key) {
      id = `${base}${createHash("sha256").update(key).digest("hex").slice(0, 6)}${suffix}`;
      owner = this.used.get(id);
      if (owner !== undefined && owner !== key) {
        throw new Error(
          `template: ${key.replace(":", " ")} and ${owner.replace(":", " ")} both become logical id "${id}"; rename one of them`,
        );
      }
    }
    this.used.set(id, key);
    return id;
  }
}

/**
 * A hash over what an API's deployment serves: its routes, integrations (with the function each
 * calls), route responses and authorizers, ids and properties. The Deployment's logical id carries
 * it, so any change API Gateway needs redeployed makes a new Deployment, and the stage moves to
 * it; a change elsewhere (a function's code, a table) keeps the id and redeploys nothing.
 */
export function deploymentHash(resources: Resources, ids: string[], routeBy?: string, named: unknown[] = []): string {
  const served: unknown[] = [...ids].sort().map((id) => [id, resources[id]?.Type, resources[id]?.Properties]);
  // The API's route selection expression, when not the default: a change to it redeploys too
  // (the default adds nothing, so the ids of sockets without routeBy are what they always were).
  if (routeBy !== undefined) served.push(["RouteSelectionExpression", routeSelectionExpression(routeBy)]);
  // The names the template gives the functions it calls (addDeployment), likewise only when any.
  if (named.length > 0) served.push(["FunctionNames", named]);
  return createHash("sha256").update(JSON.stringify(served)).digest("hex").slice(0, 8);
}

/** The template as a plain object (JSON.stringify it to write template.json). */
export function buildTemplate(input: TemplateInput): Record<string, Json> {
  return new TemplateBuilder(input).build();
}

/**
 * Builds one template. Resources are added in a fixed order (tables, then each socket, then each
 * service, then the self-invocation configs), and that order is kept: a logical id that clashes
 * goes to whichever resource asks second (see Ids), and the JSON lists resources as added.
 */
class TemplateBuilder {
  private readonly spec: Spec;
  private readonly ids = new Ids();
  private readonly resources: Resources = {};
  private readonly outputs: Record<string, Json> = {};
  private readonly sockets: WebsocketSpec[];
  /** The logical ids of the functions (referenceBytes: a function's Ref is its name). */
  private readonly functionIds = new Set<string>();
  /**
   * Per service, the sockets whose connect handler it runs and whose disconnect handler another
   * service's function runs, with that service: lateDisconnectTargets.
   */
  private readonly lateDisconnects: Map<string, Map<string, string>>;
  /**
   * The services whose functions the template names (lateDisconnectNamed), each with what comes
   * before the stack's id in the name (namedFunctionPart).
   */
  private readonly named = new Map<string, string>();

  constructor(private readonly input: TemplateInput) {
    this.spec = input.spec;
    this.sockets = this.spec.resources.filter((r): r is WebsocketSpec => r.kind === "websocket");
    this.lateDisconnects = lateDisconnectTargets(this.sockets);
    const owners = new Map<string, string>();
    for (const service of [...lateDisconnectNamed(this.lateDisconnects)].sort()) {
      const part = namedFunctionPart(service);
      const owner = owners.get(part);
      if (owner !== undefined)
        throw new Error(
          `template: services "${owner}" and "${service}" would both name their functions "${part}-<stack id>"; rename one of them`,
        );
      owners.set(part, service);
      this.named.set(service, part);
    }
  }

  private apiId(socket: string): string {
    return this.ids.id("websocket", socket, "Api");
  }
  private functionId(service: string): string {
    const id = this.ids.id("service", service, "Function");
    this.functionIds.add(id);
    return id;
  }
  private roleId(service: string): string {
    return this.ids.id("service", service, "Role");
  }
  private tableId(store: string): string {
    return this.ids.id("kv", store, "KvTable");
  }
  private logGroupId(service: string): string {
    return this.ids.id("service", service, "LogGroup");
  }
  private secretId(secret: string): string {
    return this.ids.id("secret", secret, "Secret");
  }

  build(): Record<string, Json> {
    this.addTables();
    this.addSecrets();
    for (const socket of this.sockets) this.addSocket(socket);
    /** The services whose functions invoke themselves (see addSelfInvokePolicy). */
    const selfInvoking: string[] = [];
    for (const service of this.spec.services) if (this.addService(service.name)) selfInvoking.push(service.name);
    for (const name of selfInvoking) this.addSelfInvokeConfig(name);
    return {
      AWSTemplateFormatVersion: "2010-09-09",
      Description: `nitric-like project "${this.spec.name}"`,
      Parameters: {
        ArtifactBucket: { Type: "String", Description: "The S3 bucket holding the function zips" },
      },
      Resources: this.resources,
      Outputs: this.outputs,
    };
  }

  /** The connections table (when there is a socket) and a table per kv store. */
  private addTables(): void {
    if (this.sockets.length > 0)
      this.resources.ConnectionsTable = table("socket", "id", {
        TimeToLiveSpecification: { AttributeName: "expiresAt", Enabled: true },
      });
    for (const store of this.spec.resources.filter((r) => r.kind === "kv")) {
      this.resources[this.tableId(store.name)] = table("_p", "_k", {
        Tags: [{ Key: "nitric-like:kv", Value: store.name }],
      });
    }
  }

  /**
   * A Secrets Manager secret per secret, with no value (a put gives it its first version), and an
   * output with its ARN (`nitric-like secret put` finds it there). No Name: CloudFormation names it
   * `<LogicalId>-<random>`, since a deleted secret's name stays taken while it is scheduled for
   * deletion (7 to 30 days), and a fixed name would fail the next `up` of the same app. Deleted
   * with the stack (a scheduled deletion, recoverable for 30 days) unless `down --keep-data` sets
   * it to Retain, as a kv table.
   */
  private addSecrets(): void {
    for (const secret of this.spec.resources.filter((r) => r.kind === "secret")) {
      const id = this.secretId(secret.name);
      this.resources[id] = {
        Type: "AWS::SecretsManager::Secret",
        DeletionPolicy: "Delete",
        Properties: {
          Description: `nitric-like secret "${secret.name}" of project "${this.spec.name}"`,
          Tags: [{ Key: SECRET_TAG, Value: secret.name }],
        },
      };
      this.outputs[secretOutputKey(secret.name)] = { Description: `secret ${secret.name}`, Value: { Ref: id } };
    }
  }

  /** A socket's API, authorizer, routes, invoke permissions, deployment, stage and URL output. */
  private addSocket(socket: WebsocketSpec): void {
    const api = this.apiId(socket.name);
    this.resources[api] = {
      Type: "AWS::ApiGatewayV2::Api",
      Properties: {
        Name: { "Fn::Sub": `\${AWS::StackName}-${socket.name}` },
        ProtocolType: "WEBSOCKET",
        // A message selects a route by its "action", or the socket's routeBy (socket.route); the
        // rest go to $default.
        RouteSelectionExpression: routeSelectionExpression(socket.routeBy),
        Description: `nitric-like websocket "${socket.name}" of project "${this.spec.name}"`,
      },
    };
    const authorizer = this.addAuthorizer(socket, api);
    const { routes, deployed, targets } = this.addRoutes(socket, api, authorizer);
    for (const service of [...targets].sort()) this.addInvokePermission(socket, api, service);
    // The functions the API calls that the template names: see addDeployment.
    const called = new Set(targets);
    if (socket.authorizer) called.add(socket.authorizer);
    const named = [...called]
      .filter((service) => this.named.has(service))
      .sort()
      .map((service) => [service, this.named.get(service)]);
    this.addDeployment(socket, api, routes, deployed, named);
    const domain = this.domainOf(socket.name);
    this.outputs[`Websocket${logicalName(socket.name)}`] = {
      Description: `websocket ${socket.name}`,
      Value: domain ? `wss://${domain.name}` : { "Fn::Sub": endpointOf(api, "wss") },
    };
    if (domain) this.addDomain(socket, api, domain);
  }

  private domainOf(socket: string): SocketDomain | undefined {
    const domains = this.input.domains;
    return domains !== undefined && Object.hasOwn(domains, socket) ? domains[socket] : undefined;
  }

  /**
   * A socket's custom domain: a regional API Gateway domain name with the certificate (WebSocket
   * APIs take no edge-optimized one), mapped to the stage at its root, so `wss://<name>` reaches
   * the stage as its execute-api URL does; an alias A record in the hosted zone when one is given,
   * else an output with the regional name to point a CNAME at. The API's own URL stays an output.
   */
  private addDomain(socket: WebsocketSpec, api: string, domain: SocketDomain): void {
    const id = this.ids.id("websocket", socket.name, "Domain");
    this.resources[id] = {
      Type: "AWS::ApiGatewayV2::DomainName",
      Properties: {
        DomainName: domain.name,
        DomainNameConfigurations: [
          { CertificateArn: domain.certificate, EndpointType: "REGIONAL", SecurityPolicy: "TLS_1_2" },
        ],
      },
    };
    const stage = this.ids.id("websocket", socket.name, "Stage");
    this.resources[this.ids.id("websocket", socket.name, "DomainMapping")] = {
      Type: "AWS::ApiGatewayV2::ApiMapping",
      Properties: { ApiId: { Ref: api }, DomainName: { Ref: id }, Stage: STAGE },
      DependsOn: [stage],
    };
    const name = logicalName(socket.name);
    if (domain.hostedZone !== undefined) {
      this.resources[this.ids.id("websocket", socket.name, "DomainRecord")] = {
        Type: "AWS::Route53::RecordSet",
        Properties: {
          HostedZoneId: domain.hostedZone,
          Name: domain.name,
          Type: "A",
          AliasTarget: {
            DNSName: { "Fn::GetAtt": [id, "RegionalDomainName"] },
            HostedZoneId: { "Fn::GetAtt": [id, "RegionalHostedZoneId"] },
          },
        },
      };
    } else {
      this.outputs[`DomainTarget${name}`] = {
        Description: `the DNS target of websocket ${socket.name}'s domain ${domain.name}: a CNAME record of ${domain.name} to it (or an alias)`,
        Value: { "Fn::GetAtt": [id, "RegionalDomainName"] },
      };
    }
    this.outputs[`ApiUrl${name}`] = {
      Description: `the API Gateway URL of websocket ${socket.name}, which its domain ${domain.name} maps`,
      Value: { "Fn::Sub": endpointOf(api, "wss") },
    };
  }

  /**
   * The socket's authorizer, if it has one: a Lambda REQUEST authorizer on $connect (the only
   * route WebSocket APIs authorize). No identity sources: a token may come in the query or in
   * Sec-WebSocket-Protocol, and API Gateway refuses a request lacking an identity source with 401
   * before the function runs, which the local provider would not do. WebSocket authorizers are not
   * cached, so every $connect invokes the function once.
   */
  private addAuthorizer(socket: WebsocketSpec, api: string): string | undefined {
    if (!socket.authorizer) return undefined;
    const authorizer = this.ids.id("websocket", socket.name, "Authorizer");
    this.resources[authorizer] = {
      Type: "AWS::ApiGatewayV2::Authorizer",
      Properties: {
        ApiId: { Ref: api },
        AuthorizerType: "REQUEST",
        Name: `${socket.name}-authorize`,
        AuthorizerUri: {
          "Fn::Sub": `arn:\${AWS::Partition}:apigateway:\${AWS::Region}:lambda:path/2015-03-31/functions/\${${this.functionId(socket.authorizer)}.Arn}/invocations`,
        },
      },
    };
    // Least privilege: API Gateway may invoke the function as this authorizer only.
    this.resources[this.ids.id("permission", [socket.name, "authorizer"], "AuthorizerPermission")] = {
      Type: "AWS::Lambda::Permission",
      Properties: {
        Action: "lambda:InvokeFunction",
        FunctionName: { "Fn::GetAtt": [this.functionId(socket.authorizer), "Arn"] },
        Principal: "apigateway.amazonaws.com",
        SourceArn: {
          "Fn::Sub": `arn:\${AWS::Partition}:execute-api:\${AWS::Region}:\${AWS::AccountId}:\${${api}}/authorizers/\${${authorizer}}`,
        },
      },
    };
    return authorizer;
  }

  /**
   * An integration and a route per handled event (and the message route's response). Returns the
   * routes (the deployment waits for them), what the deployment serves and the services called.
   */
  private addRoutes(
    socket: WebsocketSpec,
    api: string,
    authorizer: string | undefined,
  ): { routes: string[]; deployed: string[]; targets: Set<string> } {
    const routes: string[] = [];
    /** Everything the live API reads from its deployment: a change to any of it must redeploy. */
    const deployed: string[] = [];
    const targets = new Set<string>();
    for (const [event, service] of Object.entries(socket.handlers) as [WebsocketEvent, string | undefined][]) {
      if (!service) continue;
      const integration = this.ids.id("route", [socket.name, event], "Integration");
      const route = this.ids.id("route", [socket.name, event], "Route");
      this.resources[integration] = this.lambdaIntegration(api, service);
      this.resources[route] = {
        Type: "AWS::ApiGatewayV2::Route",
        Properties: {
          ApiId: { Ref: api },
          RouteKey: ROUTE_KEYS[event],
          Target: { "Fn::Sub": `integrations/\${${integration}}` },
          ...(event === "message" ? { RouteResponseSelectionExpression: "$default" } : {}),
          ...(event === "connect" && authorizer
            ? { AuthorizationType: "CUSTOM", AuthorizerId: { Ref: authorizer } }
            : {}),
        },
      };
      routes.push(route);
      deployed.push(integration, route);
      if (event === "message") {
        // A message handler's single text reply rides back on the route response.
        const routeResponse = this.ids.id("route", [socket.name, event], "RouteResponse");
        this.resources[routeResponse] = {
          Type: "AWS::ApiGatewayV2::RouteResponse",
          Properties: { ApiId: { Ref: api }, RouteId: { Ref: route }, RouteResponseKey: "$default" },
        };
        routes.push(routeResponse);
        deployed.push(routeResponse);
      }
      targets.add(service);
    }
    this.addMessageRoutes(socket, api, { routes, deployed, targets });
    return { routes, deployed, targets };
  }

  /** An integration of the API `api` that invokes the function of `service` (Lambda proxy). */
  private lambdaIntegration(api: string, service: string): Resources[string] {
    return {
      Type: "AWS::ApiGatewayV2::Integration",
      Properties: {
        ApiId: { Ref: api },
        IntegrationType: "AWS_PROXY",
        IntegrationUri: {
          "Fn::Sub": `arn:\${AWS::Partition}:apigateway:\${AWS::Region}:lambda:path/2015-03-31/functions/\${${this.functionId(service)}.Arn}/invocations`,
        },
      },
    };
  }

  /**
   * A route per message route (`socket.route(action, ...)`): API Gateway selects it for a message
   * whose `$request.body.action` is its key, the action; every other message takes `$default`.
   * Each route calls its service's function through one integration per (socket, service), and
   * has a route response, so its handler's single text reply rides back as a `$default`
   * message handler's does.
   */
  private addMessageRoutes(
    socket: WebsocketSpec,
    api: string,
    into: { routes: string[]; deployed: string[]; targets: Set<string> },
  ): void {
    const integrations = new Map<string, string>();
    for (const { action, service } of socket.routes ?? []) {
      let integration = integrations.get(service);
      if (integration === undefined) {
        integration = this.ids.id("actions", [socket.name, service], "ActionsIntegration");
        integrations.set(service, integration);
        this.resources[integration] = this.lambdaIntegration(api, service);
        into.deployed.push(integration);
        into.targets.add(service);
      }
      const route = this.ids.routeId(socket.name, action, "ActionRoute");
      this.resources[route] = {
        Type: "AWS::ApiGatewayV2::Route",
        Properties: {
          ApiId: { Ref: api },
          RouteKey: action,
          Target: { "Fn::Sub": `integrations/\${${integration}}` },
          RouteResponseSelectionExpression: "$default",
        },
      };
      const routeResponse = this.ids.routeId(socket.name, action, "ActionRouteResponse");
      this.resources[routeResponse] = {
        Type: "AWS::ApiGatewayV2::RouteResponse",
        Properties: { ApiId: { Ref: api }, RouteId: { Ref: route }, RouteResponseKey: "$default" },
      };
      into.routes.push(route, routeResponse);
      into.deployed.push(route, routeResponse);
    }
  }

  /** API Gateway may invoke the function of a service that handles one of the socket's events. */
  private addInvokePermission(socket: WebsocketSpec, api: string, service: string): void {
    this.resources[this.ids.id("permission", [socket.name, service], "Permission")] = {
      Type: "AWS::Lambda::Permission",
      // Nothing calls the function before its log group is there to take its logs.
      DependsOn: [this.logGroupId(service)],
      Properties: {
        Action: "lambda:InvokeFunction",
        FunctionName: { "Fn::GetAtt": [this.functionId(service), "Arn"] },
        Principal: "apigateway.amazonaws.com",
        SourceArn: {
          "Fn::Sub": `arn:\${AWS::Partition}:execute-api:\${AWS::Region}:\${AWS::AccountId}:\${${api}}/*`,
        },
      },
    };
  }

  /**
   * The deployment (its id carries a hash of what it serves, see deploymentHash) and the stage.
   * `named`: the functions the API calls that the template names. An integration refers to its
   * function as `${<Function>.Arn}`, whatever its name, so a function that comes to be named (it
   * joins a cycle of late disconnects) and is replaced changes the integration's URI but not its
   * properties in the template: the name goes into the hash, so the stage moves to a deployment
   * that calls the new function, not the deleted one (API Gateway serves a stage's deployment as
   * it was made). Nothing is added for an API that calls none, so its id stays what it was.
   */
  private addDeployment(
    socket: WebsocketSpec,
    api: string,
    routes: string[],
    deployed: string[],
    named: unknown[] = [],
  ): void {
    // Whatever else hangs off the API (an authorizer, say) counts too.
    for (const [id, resource] of Object.entries(this.resources)) {
      const ref = (resource.Properties.ApiId as { Ref?: string } | undefined)?.Ref;
      const own = resource.Type === "AWS::ApiGatewayV2::Deployment" || resource.Type === "AWS::ApiGatewayV2::Stage";
      if (ref === api && !own && !deployed.includes(id)) deployed.push(id);
    }
    const deployment = this.ids.id(
      "websocket",
      socket.name,
      `Deployment${deploymentHash(this.resources, deployed, socket.routeBy, named)}`,
    );
    this.resources[deployment] = {
      Type: "AWS::ApiGatewayV2::Deployment",
      Properties: { ApiId: { Ref: api } },
      DependsOn: routes,
    };
    this.resources[this.ids.id("websocket", socket.name, "Stage")] = {
      Type: "AWS::ApiGatewayV2::Stage",
      Properties: { ApiId: { Ref: api }, StageName: STAGE, DeploymentId: { Ref: deployment } },
    };
  }

  /** The sockets a service handles events or message routes of, or manages: its function reaches them. */
  private reachableBy(service: string): WebsocketSpec[] {
    const handled = this.sockets.filter(
      (s) => Object.values(s.handlers).includes(service) || (s.routes ?? []).some((r) => r.service === service),
    );
    const managed = this.sockets.filter((s) =>
      this.spec.policies.some(
        (p) =>
          p.service === service &&
          p.resource.kind === "websocket" &&
          p.resource.name === s.name &&
          p.permissions.includes("manage"),
      ),
    );
    return this.sockets.filter((s) => handled.includes(s) || managed.includes(s));
  }

  /**
   * A service's log group, role, self-invoke policy and function. True when the function invokes
   * itself (it reaches a socket).
   */
  private addService(service: string): boolean {
    const fn = this.functionId(service);
    const role = this.roleId(service);
    const reachable = this.reachableBy(service);
    const logGroup = this.logGroupId(service);
    this.resources[logGroup] = {
      Type: "AWS::Logs::LogGroup",
      DeletionPolicy: "Delete",
      Properties: {
        LogGroupName: { "Fn::Sub": `/aws/lambda/\${AWS::StackName}/${service}` },
        RetentionInDays: this.input.logRetentionDays ?? LOG_RETENTION_DAYS,
      },
    };
    this.resources[role] = {
      Type: "AWS::IAM::Role",
      Properties: {
        AssumeRolePolicyDocument: {
          Version: "2012-10-17",
          Statement: [{ Effect: "Allow", Principal: { Service: "lambda.amazonaws.com" }, Action: "sts:AssumeRole" }],
        },
        Policies: [
          {
            PolicyName: "nitric-like",
            PolicyDocument: { Version: "2012-10-17", Statement: this.roleStatements(service, reachable, logGroup) },
          },
        ],
      },
    };
    if (reachable.length > 0) this.addSelfInvokePolicy(service, role, fn);
    this.addLateDisconnectPolicy(service, role);
    const key = this.input.artifactKeys[service];
    if (key === undefined) throw new Error(`template: no artifact for service "${service}"`);
    const part = this.named.get(service);
    this.resources[fn] = {
      Type: "AWS::Lambda::Function",
      Properties: {
        // Only a function on a cycle of late disconnects (lateDisconnectNamed) is named here.
        ...(part !== undefined
          ? { FunctionName: { "Fn::Sub": [functionNameSub(part), { [STACK_UUID]: STACK_UUID_VALUE }] } }
          : {}),
        Description: `nitric-like service "${service}" of project "${this.spec.name}"`,
        Runtime: "nodejs22.x",
        Architectures: ["arm64"],
        Handler: "index.handler",
        Code: { S3Bucket: { Ref: "ArtifactBucket" }, S3Key: key },
        Role: { "Fn::GetAtt": [role, "Arn"] },
        MemorySize:
          (this.input.serviceMemoryMb && Object.hasOwn(this.input.serviceMemoryMb, service)
            ? this.input.serviceMemoryMb[service]
            : undefined) ??
          this.input.memoryMb ??
          512,
        Timeout: functionTimeoutSeconds(this.input.handlerTimeoutMs, this.input.timeoutSeconds),
        Environment: { Variables: this.environment(service, reachable) },
        LoggingConfig: { LogGroup: { Ref: logGroup } },
      },
    };
    return reachable.length > 0;
  }

  /**
   * What a service's role allows: its own log group, the kv and secret actions its `.allow()` calls name, and
   * for the sockets it reaches, managing their connections and their records in the connections table.
   */
  private roleStatements(service: string, reachable: WebsocketSpec[], logGroup: string): Json[] {
    // The function writes to its own log group only (AWSLambdaBasicExecutionRole would allow every
    // log group of the account).
    const statements: Json[] = [
      {
        Effect: "Allow",
        Action: ["logs:CreateLogStream", "logs:PutLogEvents"],
        // The group's Arn ends in ":*", which covers its log streams.
        Resource: { "Fn::GetAtt": [logGroup, "Arn"] },
      },
    ];
    for (const policy of this.spec.policies) {
      if (policy.service !== service || policy.resource.kind !== "kv") continue;
      const actions = [...new Set(policy.permissions.flatMap((p) => KV_ACTIONS[p] ?? []))].sort();
      if (actions.length === 0) continue;
      statements.push({
        Effect: "Allow",
        Action: actions,
        Resource: { "Fn::GetAtt": [this.tableId(policy.resource.name), "Arn"] },
      });
    }
    for (const policy of this.spec.policies) {
      if (policy.service !== service || policy.resource.kind !== "secret") continue;
      const actions = [...new Set(policy.permissions.flatMap((p) => SECRET_ACTIONS[p] ?? []))].sort();
      if (actions.length === 0) continue;
      // A secret's Ref is its ARN.
      statements.push({ Effect: "Allow", Action: actions, Resource: { Ref: this.secretId(policy.resource.name) } });
    }
    if (reachable.length === 0) return statements;
    statements.push({
      Effect: "Allow",
      Action: "execute-api:ManageConnections",
      Resource: reachable.map((s) => ({
        "Fn::Sub": `arn:\${AWS::Partition}:execute-api:\${AWS::Region}:\${AWS::AccountId}:\${${this.apiId(s.name)}}/${STAGE}/*/@connections/*`,
      })),
    });
    statements.push({
      Effect: "Allow",
      // UpdateItem: a connection's rooms and state (connections-table.ts), in the same table.
      Action: ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"],
      Resource: { "Fn::GetAtt": ["ConnectionsTable", "Arn"] },
      // The table's partition key is the socket's name (a room's membership items:
      // "<socket>#<room>"; socket names hold no "#", "*" or "?"): a service reads and writes
      // only the records and rooms of the sockets it handles or manages.
      Condition: {
        "ForAllValues:StringLike": {
          "dynamodb:LeadingKeys": reachable
            .map((s) => s.name)
            .sort()
            .flatMap((name) => [name, `${name}#*`]),
        },
      },
    });
    return statements;
  }

  /**
   * A function that can reach a socket invokes itself: to deliver messages sent during connect
   * once the connection is open, and to fan a large broadcast out in pages. A separate policy
   * avoids a cycle between the role and the function.
   */
  private addSelfInvokePolicy(service: string, role: string, fn: string): void {
    this.resources[this.ids.id("service", service, "SelfInvokePolicy")] = {
      Type: "AWS::IAM::Policy",
      Properties: {
        PolicyName: "nitric-like-deliver",
        Roles: [{ Ref: role }],
        PolicyDocument: {
          Version: "2012-10-17",
          Statement: [{ Effect: "Allow", Action: "lambda:InvokeFunction", Resource: { "Fn::GetAtt": [fn, "Arn"] } }],
        },
      },
    };
  }

  /**
   * A function that runs a socket's connect handler, whose disconnect handler another service's
   * function runs, may invoke that function (only it): when a connect handler answers after its
   * client was refused (504), the runtime hands the disconnect for that connection to it. A
   * separate policy, as the self-invocation's: the role and the other function never wait on each
   * other.
   */
  private addLateDisconnectPolicy(service: string, role: string): void {
    const targets = [...new Set(this.lateDisconnects.get(service)?.values() ?? [])].sort();
    if (targets.length === 0) return;
    this.resources[this.ids.id("service", service, "LateDisconnectPolicy")] = {
      Type: "AWS::IAM::Policy",
      Properties: {
        PolicyName: "nitric-like-late-disconnect",
        Roles: [{ Ref: role }],
        PolicyDocument: {
          Version: "2012-10-17",
          Statement: [
            {
              Effect: "Allow",
              Action: "lambda:InvokeFunction",
              // A function the template names by its name, written out: a GetAtt would make this
              // policy wait for it, and it for this policy's role's function (lateDisconnectNamed).
              Resource: targets.map((target) => {
                const part = this.named.get(target);
                return part === undefined
                  ? { "Fn::GetAtt": [this.functionId(target), "Arn"] }
                  : {
                      "Fn::Sub": [
                        `arn:\${AWS::Partition}:lambda:\${AWS::Region}:\${AWS::AccountId}:function:${functionNameSub(part)}`,
                        { [STACK_UUID]: STACK_UUID_VALUE },
                      ],
                    };
              }),
            },
          ],
        },
      },
    };
  }

  /** A function's environment: the runtime's bindings (runtime/bindings.ts). */
  private environment(service: string, reachable: WebsocketSpec[]): Record<string, Json> {
    const websockets = Object.fromEntries(
      reachable.map((s) => [
        s.name,
        {
          // The runtime derives the socket's URLs from its API id and NITRIC_LIKE_WEBSOCKET_ENDPOINT
          // (written once, not per socket: Lambda's 4 KB of variables hold 3 times the sockets).
          apiId: `\${${this.apiId(s.name)}}`,
          // socket.url() answers the custom domain's URL when the socket has one.
          ...(this.domainOf(s.name) ? { domain: this.domainOf(s.name)?.name } : {}),
          events: (Object.entries(s.handlers) as [WebsocketEvent, string | undefined][])
            .filter(([, svc]) => svc === service)
            .map(([event]) => event),
          // The message routes this function serves (runtime/bindings.ts); absent when none.
          ...routesServedBy(s, service),
          ...(s.authorizer === service ? { authorize: true } : {}),
          // The function that runs the socket's disconnect handler, when another service's: its
          // name, for the disconnect of a connect handler that answered late. A function's Ref,
          // or, for one the template names, that name written out (lateDisconnectNamed).
          ...(this.lateDisconnects.get(service)?.has(s.name)
            ? { disconnect: this.functionNameIn(this.lateDisconnects.get(service)?.get(s.name) as string) }
            : {}),
        },
      ]),
    );
    const kvTables = Object.fromEntries(
      this.spec.policies
        .filter((p) => p.service === service && p.resource.kind === "kv")
        .map((p) => [p.resource.name, `\${${this.tableId(p.resource.name)}}`]),
    );
    const secrets = Object.fromEntries(
      this.spec.policies
        .filter((p) => p.service === service && p.resource.kind === "secret")
        .map((p) => [p.resource.name, `\${${this.secretId(p.resource.name)}}`]),
    );
    // The user's first: the runtime's own names (NITRIC_*) are refused among them.
    const variables: Record<string, Json> = {
      ...this.input.variables,
      NITRIC_LIKE_SERVICE: service,
      NITRIC_LIKE_WEBSOCKETS: withStackUuid(JSON.stringify(websockets)),
      NITRIC_LIKE_KV_TABLES: { "Fn::Sub": JSON.stringify(kvTables) },
    };
    if (Object.keys(secrets).length > 0) variables.NITRIC_LIKE_SECRETS = { "Fn::Sub": JSON.stringify(secrets) };
    // What the collect pass saw the service declare: the runtime refuses, with the fix, what it
    // declares beyond this once started (in a handler), which no deployment would include.
    variables.NITRIC_LIKE_DECLARED = JSON.stringify(
      declaredBy(this.spec, service, {
        kv: Object.keys(kvTables),
        secret: Object.keys(secrets),
        websocket: Object.keys(websockets),
      }),
    );
    if (reachable.length > 0) {
      variables.NITRIC_LIKE_WEBSOCKET_ENDPOINT = { "Fn::Sub": endpointOf(API_ID_PLACEHOLDER, "https") };
      variables.NITRIC_LIKE_CONNECTIONS_TABLE = { Ref: "ConnectionsTable" };
    }
    if (this.input.handlerTimeoutMs !== undefined)
      variables.NITRIC_LIKE_HANDLER_TIMEOUT_MS = String(this.input.handlerTimeoutMs);
    const bytes = variablesBytes(variables, (ref) => this.referenceBytes(ref));
    if (bytes > MAX_FUNCTION_VARIABLES_BYTES) {
      // Whatever fills it: --env-from, or the runtime's own bindings (a service that handles many
      // sockets and routes, or is allowed many stores and secrets), which Lambda counts alike.
      const theirs = this.input.variables ? variablesBytes({ ...this.input.variables }) : 0;
      const size = (name: string, value: Json) => variablesBytes({ [name]: value }, (ref) => this.referenceBytes(ref));
      const ours = Object.entries(variables)
        .filter(([name]) => !this.input.variables || !Object.hasOwn(this.input.variables, name))
        .map(([name, value]) => [name, size(name, value)] as const)
        .sort((a, b) => b[1] - a[1])
        .slice(0, 3)
        .map(([name, n]) => `${name} ${n}`)
        .join(", ");
      const fix =
        theirs > 0
          ? "keep large values elsewhere (a kv store, a secret store) and give the functions their names"
          : "split the service: move some of its sockets' handlers, or the code that uses some of its stores and secrets, into another service";
      throw Object.assign(
        new Error(
          `${theirs > 0 ? "--env-from: " : ""}the function of service "${service}" would have about ${bytes} bytes of environment variables (${theirs > 0 ? `${theirs} of them from --env-from; ` : ""}nitric-like's own: ${ours}), over Lambda's ${MAX_FUNCTION_VARIABLES_BYTES} for a function, which it would refuse mid-deploy; ${fix}`,
        ),
        { userFacing: true },
      );
    }
    return variables;
  }

  /** A service's function's name in an Fn::Sub text: its Ref, or the name the template gives it. */
  private functionNameIn(service: string): string {
    const part = this.named.get(service);
    return part === undefined ? `\${${this.functionId(service)}}` : functionNameSub(part);
  }

  /**
   * The most bytes what a reference in a function's environment names takes once CloudFormation
   * fills it in: pseudo parameters, an API's id (10 characters), a table's generated name
   * (`<stack>-<logical id>-<12 characters>`), a secret's ARN (its generated name is
   * `<logical id>-<12 characters>`, and Secrets Manager adds `-<6 characters>`); 96 for anything else.
   */
  private referenceBytes(ref: string): number {
    if (ref === "AWS::Region") return 16; // the longest region names have 14 characters
    if (ref === "AWS::URLSuffix") return 16; // amazonaws.com.cn
    if (ref === "AWS::Partition") return 10; // aws-us-gov
    if (ref === "AWS::AccountId") return 12;
    if (ref === STACK_UUID) return 36;
    const type = Object.hasOwn(this.resources, ref) ? (this.resources[ref] as { Type?: unknown }).Type : undefined;
    if (type === "AWS::ApiGatewayV2::Api") return 10;
    // A function's generated name: at most 64 characters (Lambda's limit).
    if (this.functionIds.has(ref)) return 64;
    if (type === "AWS::DynamoDB::Table") return Math.min(255, this.spec.name.length + ref.length + 14);
    if (type === "AWS::SecretsManager::Secret")
      return "arn::secretsmanager:::secret:".length + 10 + 16 + 12 + ref.length + 13 + 7;
    return 96;
  }

  /**
   * The self-invocations (messages sent during connect, broadcast pages) are asynchronous: Lambda
   * would retry a failed one twice, a minute or more later, posting its frames again. The runtime
   * retries the posts itself, so Lambda must not; an event queued longer than
   * SELF_INVOKE_MAX_AGE_SECONDS (throttling) is dropped rather than delivered that late.
   */
  private addSelfInvokeConfig(service: string): void {
    this.resources[this.ids.id("service", service, "SelfInvokeConfig")] = {
      Type: "AWS::Lambda::EventInvokeConfig",
      Properties: {
        FunctionName: { Ref: this.functionId(service) },
        Qualifier: "$LATEST",
        MaximumRetryAttempts: 0,
        MaximumEventAgeInSeconds: SELF_INVOKE_MAX_AGE_SECONDS,
      },
    };
  }
}

/**
 * Per service, the sockets whose connect handler it runs while another service runs their
 * disconnect handler, each with that service: the connect function is given the other function's
 * name, and may invoke it. Every such pair is kept; where they close a cycle (two services that
 * each handle the connect of a socket whose disconnect the other handles, or a longer ring), the
 * functions in it are named by the template (lateDisconnectNamed) rather than referred to.
 */
export function lateDisconnectTargets(sockets: readonly WebsocketSpec[]): Map<string, Map<string, string>> {
  const out = new Map<string, Map<string, string>>();
  for (const socket of sockets) {
    const connect = socket.handlers.connect;
    const disconnect = socket.handlers.disconnect;
    if (connect === undefined || disconnect === undefined || connect === disconnect) continue;
    let targets = out.get(connect);
    if (targets === undefined) {
      targets = new Map();
      out.set(connect, targets);
    }
    targets.set(socket.name, disconnect);
  }
  return out;
}

/**
 * The services whose functions the template names itself (FunctionName), because they lie on a
 * cycle of late-disconnect targets (lateDisconnectTargets): were each function of such a cycle
 * given the next one's name by a Ref, and allowed to invoke it by a GetAtt, each would have to be
 * created before the other, which CloudFormation refuses ("Circular dependency"). A function the
 * template names can be referred to by that name, written out (functionNameSub), which waits on
 * nothing. Only the functions of a cycle: naming a function deployed without a name makes
 * CloudFormation replace it (a new function, then the old one deleted), so every other keeps the
 * name CloudFormation generated. It depends only on which services handle which events, not on the
 * order of the sockets, so reordering declarations never renames a function. (Rather than a name
 * the runtime would look up, in an SSM parameter or with CloudFormation's DescribeStackResource:
 * that is one more service, grant and call, made in what is left of a late connect's invocation,
 * and one more thing the emulator would have to play.)
 */
export function lateDisconnectNamed(targets: ReadonlyMap<string, ReadonlyMap<string, string>>): Set<string> {
  const next = (service: string) => new Set(targets.get(service)?.values() ?? []);
  /** Whether `to` can be reached from `from` in one step or more. */
  const reaches = (from: string, to: string): boolean => {
    const seen = new Set<string>();
    const stack = [...next(from)];
    while (stack.length > 0) {
      const at = stack.pop() as string;
      if (at === to) return true;
      if (seen.has(at)) continue;
      seen.add(at);
      stack.push(...next(at));
    }
    return false;
  };
  return new Set([...targets.keys()].filter((service) => reaches(service, service)));
}

/**
 * The variable that stands for the stack's unique id in a named function's name: the last part of
 * the stack's ARN (`arn:...:stack/<name>/<uuid>`), 36 characters, different for every stack ever
 * made, in every account and region, and the same for a stack's whole life. Not the stack's name:
 * it may have 128 characters, which no intrinsic function can shorten to Lambda's 64, and the
 * template is built before `up` is told which stack it goes to.
 */
const STACK_UUID = "StackUuid";
const STACK_UUID_VALUE = { "Fn::Select": ["2", { "Fn::Split": ["/", { Ref: "AWS::StackId" }] }] };

/** Lambda's longest function name (the name alone; CreateFunction's FunctionName). */
const MAX_FUNCTION_NAME = 64;

/**
 * What comes before the stack's id in the name of a function the template names: the service's
 * name when Lambda takes it (letters, digits, `-` and `_`) and it leaves room for the id (64 - 37
 * = 27 characters); else its first characters Lambda takes and a hash of the whole name. So
 * `<service>-<stack uuid>`, unique in the account and region (the stack's id is) and in the stack
 * (services' names are, and the TemplateBuilder constructor refuses two whose parts come out the same).
 */
export function namedFunctionPart(service: string): string {
  const room = MAX_FUNCTION_NAME - 37;
  if (/^[A-Za-z0-9_-]+$/.test(service) && service.length <= room) return service;
  const hash = createHash("sha256").update(service).digest("hex").slice(0, 8);
  return `${service.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, room - 9)}_${hash}`;
}

/** An Fn::Sub of `text`, given the stack's id as a variable when the text names a function by it. */
function withStackUuid(text: string): Json {
  return text.includes(`\${${STACK_UUID}}`)
    ? { "Fn::Sub": [text, { [STACK_UUID]: STACK_UUID_VALUE }] }
    : { "Fn::Sub": text };
}

/** The Fn::Sub text of a named function's name (`${StackUuid}` filled by the Sub's variables). */
function functionNameSub(part: string): string {
  return `${part}-\${${STACK_UUID}}`;
}

/** `{ routes: [action, ...] }`, the socket's message routes `service` handles, sorted; `{}` for none. */
function routesServedBy(socket: WebsocketSpec, service: string): { routes?: string[] } {
  const routes = (socket.routes ?? []).filter((r) => r.service === service).map((r) => r.action);
  return routes.length > 0 ? { routes } : {};
}

/** What stands for a socket's API id in NITRIC_LIKE_WEBSOCKET_ENDPOINT (runtime/bindings.ts). */
export const API_ID_PLACEHOLDER = "{apiId}";

/**
 * A socket's endpoint (`wss://` for clients, `https://` for the Management API), as an Fn::Sub
 * string; `api` is its API's logical id, or API_ID_PLACEHOLDER, which is left as it is.
 */
function endpointOf(api: string, scheme: string): string {
  const id = api === API_ID_PLACEHOLDER ? api : `\${${api}}`;
  return `${scheme}://${id}.execute-api.\${AWS::Region}.\${AWS::URLSuffix}/${STAGE}`;
}

/**
 * NITRIC_LIKE_DECLARED (runtime/bindings.ts): the service's entry file, and each resource it
 * declared or was granted. The stores, secrets and sockets its function's NITRIC_LIKE_KV_TABLES,
 * NITRIC_LIKE_SECRETS and NITRIC_LIKE_WEBSOCKETS name (`named`, in those variables' order) are
 * not named again: `grants` has a digit for each, its permissions (runtime/grants.ts), in that
 * order, left out for a kind whose digits are all 0. The others, `[kind, name, permissions]` in
 * `resources`, in the spec's order. Lambda's 4 KB of variables a function would otherwise spend
 * on each resource's name twice.
 */
export function declaredBy(
  spec: Spec,
  service: string,
  named: Record<GrantableKind, string[]>,
): { file: string; grants?: Partial<Record<GrantableKind, string>>; resources?: [string, string, string[]][] } {
  const resources = new Map<string, [string, string, string[]]>();
  for (const r of spec.resources)
    if (r.declaredBy.includes(service)) resources.set(`${r.kind}\u0000${r.name}`, [r.kind, r.name, []]);
  for (const p of spec.policies) {
    if (p.service !== service) continue;
    const key = `${p.resource.kind}\u0000${p.resource.name}`;
    resources.set(key, [p.resource.kind, p.resource.name, [...p.permissions]]);
  }
  const grants: Partial<Record<GrantableKind, string>> = {};
  for (const kind of Object.keys(named) as GrantableKind[]) {
    const digits = named[kind]
      .map((name) => {
        const key = `${kind}\u0000${name}`;
        const permissions = resources.get(key)?.[2] ?? [];
        resources.delete(key);
        return grantDigit(kind, permissions as Permission[]);
      })
      .join("");
    if (/[^0]/.test(digits)) grants[kind] = digits;
  }
  const file = spec.services.find((s) => s.name === service)?.file ?? "";
  return {
    file,
    ...(Object.keys(grants).length > 0 ? { grants } : {}),
    ...(resources.size > 0 ? { resources: [...resources.values()] } : {}),
  };
}
