/**
 * API Gateway's Management API for WebSocket connections, signed for service `execute-api`:
 * `POST` (PostToConnection, the frame as the body), `GET` (GetConnection) and `DELETE`
 * (DeleteConnection) on `{endpoint}/@connections/{connection id}`, the endpoint being the stage's
 * `https://{api}.execute-api.{region}.amazonaws.com/{stage}`. Failures are AwsError: 410
 * `GoneException`, 403 `ForbiddenException`, 413 `PayloadTooLargeException`, 429
 * `LimitExceededException` (the codes the API documents, assumed from the status when the answer
 * names none). The same requests as `@aws-sdk/client-apigatewaymanagementapi`'s for the same input:
 * test/sdk-equivalence.test.ts.
 */
import { type RetryPolicy, STANDARD_RETRY, sendSigned } from "./request.js";

/** What GetConnection says of a live connection. */
export interface LiveConnection {
  connectedAt?: Date;
  lastActiveAt?: Date;
  sourceIp?: string;
  userAgent?: string;
}

/** What a socket needs of the Management API. */
export interface ManagementApi {
  postToConnection(id: string, data: Uint8Array): Promise<void>;
  getConnection(id: string): Promise<LiveConnection>;
  deleteConnection(id: string): Promise<void>;
}

const ERRORS: Record<number, string> = {
  403: "ForbiddenException",
  410: "GoneException",
  413: "PayloadTooLargeException",
  429: "LimitExceededException",
};

/** A timestamp as the API answers it (ISO 8601; epoch seconds accepted too). */
function timeOf(value: unknown): Date | undefined {
  if (typeof value === "number") return new Date(value * 1000);
  if (typeof value !== "string") return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : new Date(ms);
}

/** One stage's Management API. */
export class ManagementApiClient implements ManagementApi {
  private readonly base: string;

  constructor(
    /** The stage's endpoint (`https://…/live`), as the function's bindings give it (runtime/bindings.ts). */
    endpoint: string,
    private readonly env: NodeJS.ProcessEnv = process.env,
    private readonly retry: RetryPolicy = STANDARD_RETRY,
  ) {
    this.base = endpoint.replace(/\/+$/, "");
  }

  private send(method: string, id: string, body?: Uint8Array) {
    const encoded = encodeURIComponent(id).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
    return sendSigned(
      this.env,
      {
        service: "execute-api",
        method,
        url: new URL(`${this.base}/@connections/${encoded}`),
        headers: body ? { "content-type": "application/octet-stream" } : {},
        ...(body ? { body } : {}),
        errorName: (status) => ERRORS[status],
      },
      this.retry,
    );
  }

  async postToConnection(id: string, data: Uint8Array): Promise<void> {
    await this.send("POST", id, data);
  }

  async getConnection(id: string): Promise<LiveConnection> {
    const response = await this.send("GET", id);
    const body = JSON.parse(response.body || "{}") as {
      connectedAt?: unknown;
      lastActiveAt?: unknown;
      identity?: { sourceIp?: unknown; userAgent?: unknown };
    };
    const connectedAt = timeOf(body.connectedAt);
    const lastActiveAt = timeOf(body.lastActiveAt);
    const sourceIp = body.identity?.sourceIp;
    const userAgent = body.identity?.userAgent;
    return {
      ...(connectedAt ? { connectedAt } : {}),
      ...(lastActiveAt ? { lastActiveAt } : {}),
      ...(typeof sourceIp === "string" ? { sourceIp } : {}),
      ...(typeof userAgent === "string" ? { userAgent } : {}),
    };
  }

  async deleteConnection(id: string): Promise<void> {
    await this.send("DELETE", id);
  }
}
