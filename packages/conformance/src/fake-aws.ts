/**
 * A loopback stand-in for the CloudFormation (query protocol, XML), S3 (path-style), DynamoDB
 * (`Scan`, for the tables' items), ACM (`DescribeCertificate`) and Route 53 (`GetHostedZone`)
 * calls that `nitric-like up` and `down` make, keeping stacks in memory and moving them through their statuses
 * one poll at a time, with stack events. No CloudFormation emulator installs on this machine; this
 * answers exactly the calls our deploy makes, so its flow is tested end to end through the SDK.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { resolveIntrinsics } from "@nitric-like/provider-aws/emulator";

type Resources = Record<string, { Type: string; DeletionPolicy?: string }>;
interface FakeStack {
  name: string;
  id: string;
  status: string;
  reason?: string;
  template?:
    | {
        Description?: string;
        Parameters?: Record<string, unknown>;
        Resources: Resources;
        Outputs?: Record<string, { Description?: string; Value: unknown }>;
      }
    | undefined;
  /** The description and parameter keys of the template last run (applied, or rolled back). */
  described?: { description?: string | undefined; parameters: string[] };
  next?: (() => void) | undefined;
  outputs: { key: string; value: string; description?: string }[];
  events: { id: string; logical: string; type: string; status: string; reason?: string; time: Date }[];
  changeSets: Map<
    string,
    {
      status: string;
      reason?: string;
      type: string;
      /** Logical id, type, and CloudFormation's action: Add, Modify or Remove. */
      changes: [string, string, string][];
      template: FakeStack["template"];
    }
  >;
}

/** The name the fake gives a resource: its logical id, lower case, `-fake`. */
const physicalId = (id: string) => `${id.toLowerCase()}-fake`;

const xml = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const tag = (name: string, value: string | undefined) =>
  value === undefined ? "" : `<${name}>${xml(value)}</${name}>`;

/** The fake, with what it was asked. */
export class FakeAws {
  readonly stacks = new Map<string, FakeStack>();
  readonly objects = new Map<string, number>();
  readonly calls: string[] = [];
  /**
   * The DynamoDB tables there are, by name, with how many items each holds: a stack's tables are
   * made (empty) when it is created, and deleted with it unless kept (DeletionPolicy Retain, or
   * RetainResources of a DELETE_FAILED stack).
   */
  readonly tables = new Map<string, number>();
  /** A resource whose creation fails, with this reason. */
  failing: { logicalId: string; reason: string } | undefined;
  /** ACM's certificates, by ARN: their status and the names they cover. */
  readonly certificates = new Map<string, { status: string; names: string[] }>();
  /** Route 53's hosted zones, by id: their names (`example.com.`). */
  readonly zones = new Map<string, string>();
  /** ACM refuses DescribeCertificate (AccessDeniedException), as to a user without acm:DescribeCertificate. */
  denyAcm = false;
  /**
   * Stacks whose work waits (as a long deploy does on AWS): their creates, updates and deletes
   * stay IN_PROGRESS until taken out.
   */
  readonly held = new Set<string>();
  /** Stacks whose change sets stay CREATE_IN_PROGRESS until taken out. */
  readonly heldChangeSets = new Set<string>();
  /**
   * Calls taken and never answered, as by a network that drops packets or a proxy that hangs:
   * CloudFormation actions (`ExecuteChangeSet`) and S3's `S3 PUT` or `S3 HEAD`. The call is
   * recorded in `calls` all the same.
   */
  readonly stalled = new Set<string>();
  private counter = 0;
  private server: Server | undefined;
  url = "";

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      void this.answer(req).then(
        ({ status, body, headers }) => res.writeHead(status, { "content-type": "text/xml", ...headers }).end(body),
        (error: Error) => res.writeHead(500).end(error.message),
      );
    });
    await new Promise<void>((r) => this.server?.listen(0, "127.0.0.1", r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  stop(): Promise<void> {
    // Stalled calls hold their connections open: closed here, or close() would wait for them.
    this.server?.closeAllConnections();
    return new Promise((r) => this.server?.close(() => r()));
  }

  /** ACM's DescribeCertificate (JSON 1.1). */
  private describeCertificate(body: Buffer): { status: number; body: string; headers: Record<string, string> } {
    const arn = String((JSON.parse(body.toString("utf8")) as { CertificateArn?: string }).CertificateArn);
    this.calls.push(`ACM DescribeCertificate ${arn}`);
    const headers = { "content-type": "application/x-amz-json-1.1" };
    if (this.denyAcm)
      return {
        status: 400,
        headers,
        body: JSON.stringify({
          __type: "AccessDeniedException",
          message: "not authorized to perform: acm:DescribeCertificate",
        }),
      };
    const certificate = this.certificates.get(arn);
    if (!certificate)
      return {
        status: 400,
        headers,
        body: JSON.stringify({ __type: "ResourceNotFoundException", message: `Could not find certificate ${arn}.` }),
      };
    const [domain, ...rest] = certificate.names;
    return {
      status: 200,
      headers,
      body: JSON.stringify({
        Certificate: {
          CertificateArn: arn,
          DomainName: domain,
          SubjectAlternativeNames: [domain, ...rest],
          Status: certificate.status,
        },
      }),
    };
  }

  /** Route 53's GetHostedZone (REST, XML). */
  private getHostedZone(id: string): { status: number; body: string } {
    this.calls.push(`Route53 GetHostedZone ${id}`);
    const ns = "https://route53.amazonaws.com/doc/2013-04-01/";
    const name = this.zones.get(id);
    if (name === undefined)
      return {
        status: 404,
        body: `<?xml version="1.0"?>\n<ErrorResponse xmlns="${ns}"><Error><Type>Sender</Type><Code>NoSuchHostedZone</Code><Message>No hosted zone found with ID: ${xml(id)}</Message></Error><RequestId>r</RequestId></ErrorResponse>`,
      };
    return {
      status: 200,
      body: `<?xml version="1.0"?>\n<GetHostedZoneResponse xmlns="${ns}"><HostedZone><Id>/hostedzone/${xml(id)}</Id><Name>${xml(name)}</Name><CallerReference>fake</CallerReference><ResourceRecordSetCount>2</ResourceRecordSetCount></HostedZone></GetHostedZoneResponse>`,
    };
  }

  private event(stack: FakeStack, logical: string, type: string, status: string, reason?: string): void {
    stack.events.unshift({
      id: `e${++this.counter}`,
      logical,
      type,
      status,
      time: new Date(),
      ...(reason ? { reason } : {}),
    });
  }

  private async answer(
    req: IncomingMessage,
  ): Promise<{ status: number; body: string; headers?: Record<string, string> }> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const target = req.headers["x-amz-target"];
    if (typeof target === "string" && target.startsWith("DynamoDB_20120810.")) return this.dynamodb(target, body);
    if (target === "CertificateManager.DescribeCertificate") return this.describeCertificate(body);
    if (req.method === "GET" && path.startsWith("/2013-04-01/hostedzone/"))
      return this.getHostedZone(decodeURIComponent(path.slice("/2013-04-01/hostedzone/".length)));
    if (req.method === "PUT" || req.method === "HEAD") {
      this.calls.push(`S3 ${req.method} ${path}`);
      if (this.stalled.has(`S3 ${req.method}`)) return new Promise(() => {});
      if (req.method === "PUT") {
        this.objects.set(path, body.length);
        return { status: 200, body: "", headers: { etag: '"fake"' } };
      }
      return { status: this.objects.has(path) ? 200 : 404, body: "" };
    }
    const form = new URLSearchParams(body.toString("utf8"));
    const action = form.get("Action") ?? "";
    this.calls.push(action);
    if (this.stalled.has(action)) return new Promise(() => {});
    const name = form.get("StackName") ?? "";
    const ok = (inner: string) => ({
      status: 200,
      body: `<${action}Response xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><${action}Result>${inner}</${action}Result><ResponseMetadata><RequestId>r${this.counter}</RequestId></ResponseMetadata></${action}Response>`,
    });
    const missing = () => ({
      status: 400,
      body: `<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error><Type>Sender</Type><Code>ValidationError</Code><Message>Stack with id ${xml(name)} does not exist</Message></Error><RequestId>r</RequestId></ErrorResponse>`,
    });
    const stack = this.stacks.get(name);
    switch (action) {
      case "DescribeStacks": {
        if (!stack) return missing();
        const step = this.held.has(name) ? undefined : stack.next;
        if (step) stack.next = undefined;
        step?.();
        if (!this.stacks.has(name)) return missing();
        const outputs = stack.outputs
          .map(
            (o) =>
              `<member>${tag("OutputKey", o.key)}${tag("OutputValue", o.value)}${tag("Description", o.description)}</member>`,
          )
          .join("");
        return ok(
          `<Stacks><member>${tag("StackName", stack.name)}${tag("StackId", stack.id)}${tag("Description", stack.described?.description)}<Parameters>${(stack.described?.parameters ?? []).map((k) => `<member>${tag("ParameterKey", k)}${tag("ParameterValue", `${k}-value`)}</member>`).join("")}</Parameters>${tag("StackStatus", stack.status)}${tag("StackStatusReason", stack.reason)}<CreationTime>2026-11-22T10:00:00.000Z</CreationTime><Outputs>${outputs}</Outputs></member></Stacks>`,
        );
      }
      case "DescribeStackEvents": {
        if (!stack) return missing();
        const events = stack.events
          .map(
            (e) =>
              `<member>${tag("EventId", e.id)}${tag("StackName", stack.name)}${tag("StackId", stack.id)}${tag("LogicalResourceId", e.logical)}${tag("ResourceType", e.type)}${tag("ResourceStatus", e.status)}${tag("ResourceStatusReason", e.reason)}${tag("Timestamp", e.time.toISOString())}</member>`,
          )
          .join("");
        return ok(`<StackEvents>${events}</StackEvents>`);
      }
      case "CreateStack": {
        const template = JSON.parse(form.get("TemplateBody") ?? "{}") as FakeStack["template"];
        const created = this.newStack(name);
        this.run(created, template, "CREATE");
        return ok(tag("StackId", created.id));
      }
      case "CreateChangeSet": {
        const template = JSON.parse(form.get("TemplateBody") ?? "{}") as FakeStack["template"];
        const type = form.get("ChangeSetType") ?? "UPDATE";
        const target = stack ?? this.newStack(name, "REVIEW_IN_PROGRESS");
        const before = target.template?.Resources ?? {};
        const after = template?.Resources ?? {};
        const changes: [string, string, string][] = [
          ...Object.keys(after)
            .filter((id) => JSON.stringify(before[id]) !== JSON.stringify(after[id]))
            .map((id): [string, string, string] => [id, after[id]?.Type ?? "", id in before ? "Modify" : "Add"]),
          ...Object.keys(before)
            .filter((id) => !(id in after))
            .map((id): [string, string, string] => [id, before[id]?.Type ?? "", "Remove"]),
        ];
        const same = JSON.stringify(target.template) === JSON.stringify(template);
        target.changeSets.set(form.get("ChangeSetName") ?? "", {
          status: same ? "FAILED" : "CREATE_COMPLETE",
          ...(same
            ? {
                reason:
                  "The submitted information didn't contain changes. Submit different information to create a change set.",
              }
            : {}),
          type,
          changes,
          template,
        });
        return ok(`${tag("Id", `cs-${this.counter}`)}${tag("StackId", target.id)}`);
      }
      case "DescribeChangeSet": {
        const cs = stack?.changeSets.get(form.get("ChangeSetName") ?? "");
        if (!cs) return missing();
        const changes = cs.changes
          .map(
            ([id, type, action]) =>
              `<member><Type>Resource</Type><ResourceChange>${tag("Action", action)}${tag("LogicalResourceId", id)}${tag("ResourceType", type)}</ResourceChange></member>`,
          )
          .join("");
        const held = this.heldChangeSets.has(name);
        return ok(
          `${tag("Status", held ? "CREATE_IN_PROGRESS" : cs.status)}${tag("StatusReason", held ? undefined : cs.reason)}${tag("ExecutionStatus", held ? "UNAVAILABLE" : "AVAILABLE")}<Changes>${changes}</Changes>`,
        );
      }
      case "ExecuteChangeSet": {
        const cs = stack?.changeSets.get(form.get("ChangeSetName") ?? "");
        if (!stack || !cs) return missing();
        this.run(stack, cs.template, cs.type);
        return ok("");
      }
      case "DeleteChangeSet":
        stack?.changeSets.delete(form.get("ChangeSetName") ?? "");
        return ok("");
      case "GetTemplate": {
        if (!stack) return missing();
        return ok(tag("TemplateBody", JSON.stringify(stack.template ?? {})));
      }
      case "ListStackResources": {
        if (!stack) return missing();
        const summaries = Object.entries(stack.template?.Resources ?? {})
          .map(
            ([id, r]) =>
              `<member>${tag("LogicalResourceId", id)}${tag("PhysicalResourceId", physicalId(id))}${tag("ResourceType", r.Type)}${tag("ResourceStatus", "CREATE_COMPLETE")}<LastUpdatedTimestamp>2026-11-22T10:00:00.000Z</LastUpdatedTimestamp></member>`,
          )
          .join("");
        return ok(`<StackResourceSummaries>${summaries}</StackResourceSummaries>`);
      }
      case "UpdateStack": {
        if (!stack) return missing();
        const template = JSON.parse(form.get("TemplateBody") ?? "{}") as FakeStack["template"];
        if (JSON.stringify(template) === JSON.stringify(stack.template)) {
          return {
            status: 400,
            body: `<ErrorResponse><Error><Type>Sender</Type><Code>ValidationError</Code><Message>No updates are to be performed.</Message></Error></ErrorResponse>`,
          };
        }
        this.run(stack, template, "UPDATE");
        return ok(tag("StackId", stack.id));
      }
      case "DeleteStack": {
        if (!stack) return ok("");
        const retained = new Set(
          [...form.entries()].filter(([k]) => k.startsWith("RetainResources.member.")).map(([, v]) => v),
        );
        stack.status = "DELETE_IN_PROGRESS";
        this.event(stack, name, "AWS::CloudFormation::Stack", "DELETE_IN_PROGRESS");
        stack.next = () => {
          for (const [id, r] of Object.entries(stack.template?.Resources ?? {})) {
            if (r.Type !== "AWS::DynamoDB::Table") continue;
            if (r.DeletionPolicy === "Retain" || retained.has(id)) {
              this.event(stack, id, r.Type, "DELETE_SKIPPED");
            } else {
              this.tables.delete(physicalId(id));
              this.event(stack, id, r.Type, "DELETE_COMPLETE");
            }
          }
          this.event(stack, name, "AWS::CloudFormation::Stack", "DELETE_COMPLETE");
          this.stacks.delete(name);
        };
        return ok("");
      }
      default:
        return {
          status: 400,
          body: `<ErrorResponse><Error><Code>InvalidAction</Code><Message>${xml(action)}</Message></Error></ErrorResponse>`,
        };
    }
  }

  /** DynamoDB's JSON protocol: Scan, enough for `down` to see whether a table holds items. */
  private dynamodb(target: string, body: Buffer): { status: number; body: string; headers: Record<string, string> } {
    const operation = target.slice("DynamoDB_20120810.".length);
    this.calls.push(`DynamoDB ${operation}`);
    const headers = { "content-type": "application/x-amz-json-1.0" };
    const input = JSON.parse(body.toString("utf8") || "{}") as { TableName?: string; Limit?: number };
    const items = this.tables.get(input.TableName ?? "");
    if (operation !== "Scan") {
      return {
        status: 400,
        headers,
        body: JSON.stringify({ __type: "UnknownOperationException", message: operation }),
      };
    }
    if (items === undefined) {
      return {
        status: 400,
        headers,
        body: JSON.stringify({
          __type: "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException",
          message: "Requested resource not found",
        }),
      };
    }
    const n = Math.min(items, input.Limit ?? items);
    const page = Array.from({ length: n }, (_, i) => ({ _p: { S: "k#0" }, _k: { S: `key-${i}` } }));
    return {
      status: 200,
      headers,
      body: JSON.stringify({
        Items: page,
        Count: n,
        ScannedCount: n,
        ...(n < items ? { LastEvaluatedKey: page[n - 1] } : {}),
      }),
    };
  }

  private newStack(name: string, status = "CREATE_IN_PROGRESS"): FakeStack {
    const stack: FakeStack = {
      name,
      id: `arn:aws:cloudformation:us-east-1:000000000000:stack/${name}/${++this.counter}`,
      status,
      outputs: [],
      events: [],
      changeSets: new Map(),
    };
    this.stacks.set(name, stack);
    return stack;
  }

  /** Starts a create or update; the next DescribeStacks completes it (or fails the failing resource). */
  private run(stack: FakeStack, template: FakeStack["template"], type: string): void {
    const verb = type === "CREATE" ? "CREATE" : "UPDATE";
    stack.status = `${verb}_IN_PROGRESS`;
    stack.described = { description: template?.Description, parameters: Object.keys(template?.Parameters ?? {}) };
    this.event(stack, stack.name, "AWS::CloudFormation::Stack", stack.status);
    const resources = template?.Resources ?? {};
    for (const [id, r] of Object.entries(resources)) this.event(stack, id, r.Type, `${verb}_IN_PROGRESS`);
    stack.next = () => {
      for (const [id, r] of Object.entries(resources)) {
        if (this.failing?.logicalId === id) {
          this.event(stack, id, r.Type, `${verb}_FAILED`, this.failing.reason);
          stack.status = verb === "CREATE" ? "ROLLBACK_COMPLETE" : "UPDATE_ROLLBACK_COMPLETE";
          this.event(stack, stack.name, "AWS::CloudFormation::Stack", stack.status);
          return;
        }
        this.event(stack, id, r.Type, `${verb}_COMPLETE`);
      }
      // A table the new template drops goes, with its items.
      for (const [id, r] of Object.entries(stack.template?.Resources ?? {})) {
        if (r.Type === "AWS::DynamoDB::Table" && !(id in resources) && r.DeletionPolicy !== "Retain") {
          this.tables.delete(physicalId(id));
          this.event(stack, id, r.Type, "DELETE_COMPLETE");
        }
      }
      stack.template = template;
      stack.status = `${verb}_COMPLETE`;
      const physical = {
        ref: {
          "AWS::Region": "us-east-1",
          "AWS::URLSuffix": "amazonaws.com",
          "AWS::StackName": stack.name,
          "AWS::AccountId": "000000000000",
          "AWS::Partition": "aws",
        } as Record<string, string>,
        attributes: {} as Record<string, Record<string, string>>,
      };
      for (const [id, r] of Object.entries(resources)) {
        physical.ref[id] = physicalId(id);
        if (r.Type === "AWS::DynamoDB::Table" && !this.tables.has(physicalId(id))) this.tables.set(physicalId(id), 0);
        // A custom domain's regional target, as API Gateway names one (what a DNS record points at).
        if (r.Type === "AWS::ApiGatewayV2::DomainName")
          physical.attributes[id] = {
            RegionalDomainName: `d-${physicalId(id)}.execute-api.us-east-1.amazonaws.com`,
            RegionalHostedZoneId: "Z1UJRXOUMOOFQ8",
          };
      }
      stack.outputs = Object.entries(template?.Outputs ?? {}).map(([key, o]) => ({
        key,
        value: String(resolveIntrinsics(o.Value, physical)),
        ...(o.Description ? { description: o.Description } : {}),
      }));
      this.event(stack, stack.name, "AWS::CloudFormation::Stack", stack.status);
    };
  }
}
