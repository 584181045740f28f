// Our DynamoDB client against dynalite (a DynamoDB implementation), and against a loopback server
// for the answers only AWS gives (access denied, throttling, 5xx); then the kv stores and the
// connections table over it, with their errors mapped to gRPC statuses.
import { PutItemCommand } from "@aws-sdk/client-dynamodb";
import { status } from "@grpc/grpc-js";
import { dict } from "@nitric-like/provider-kit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ConnectionsDynamoDb, DynamoDbClient, type Item } from "../src/aws/dynamodb.js";
import { AwsError } from "../src/aws/request.js";
import { DynamoKvStores } from "../src/kv/store.js";
import { ConnectionsTable, KEPT_HEADERS } from "../src/websocket/connections-table.js";
import { cleanup, createTable, ENV, expectSigned, FAST_RETRY, loopback, sdkDynamo, startDynalite } from "./helpers.js";

let env: NodeJS.ProcessEnv;
let client: DynamoDbClient;

beforeAll(async () => {
  const endpoint = await startDynalite();
  env = { ...ENV, AWS_ENDPOINT_URL_DYNAMODB: endpoint };
  client = new DynamoDbClient(env, FAST_RETRY);
  // Tables as the template makes them, through the AWS SDK (what the emulator does).
  const sdk = sdkDynamo(endpoint);
  await createTable(sdk, "kv-table", "_p", "_k");
  await createTable(sdk, "connections", "socket", "id");
  // An item with binary attributes, written by the SDK (bytes), read back by ours (base64).
  await sdk.send(
    new PutItemCommand({
      TableName: "kv-table",
      Item: {
        _p: { S: "bin" },
        _k: { S: "a" },
        b: { B: new Uint8Array([0, 1, 254, 255]) },
        bs: { BS: [new Uint8Array([7])] },
      },
    }),
  );
  // A kv value holding bytes (not something our SDK writes, but a table may hold it).
  await sdk.send(
    new PutItemCommand({
      TableName: "kv-table",
      Item: { _p: { S: "k" }, _k: { S: "bytes" }, _v: { M: { b: { B: new Uint8Array([0, 1, 254, 255]) } } } },
    }),
  );
  sdk.destroy();
});

afterAll(cleanup);

const key = (k: string) => ({ _p: { S: "t" }, _k: { S: k } });

describe("DynamoDbClient against dynalite", () => {
  it("puts, gets (strongly consistent) and deletes an item, every attribute kind kept", async () => {
    const item = {
      ...key("all-kinds"),
      s: { S: "text ✓" },
      n: { N: "12.5" },
      bool: { BOOL: false },
      nul: { NULL: true },
      l: { L: [{ S: "x" }, { N: "1" }] },
      m: { M: { inner: { M: { deep: { S: "y" } } } } },
      ss: { SS: ["only"] },
      ns: { NS: ["3"] },
      b: { B: Buffer.from([1, 2, 3]).toString("base64") },
    };
    await client.putItem({ TableName: "kv-table", Item: item });
    expect((await client.getItem({ TableName: "kv-table", Key: key("all-kinds"), ConsistentRead: true })).Item).toEqual(
      item,
    );
    await client.deleteItem({ TableName: "kv-table", Key: key("all-kinds") });
    expect(
      (await client.getItem({ TableName: "kv-table", Key: key("all-kinds"), ConsistentRead: true })).Item,
    ).toBeUndefined();
  });

  it("reads binary attributes as DynamoDB's JSON has them: base64", async () => {
    const { Item } = await client.getItem({ TableName: "kv-table", Key: { _p: { S: "bin" }, _k: { S: "a" } } });
    expect(Item?.b).toEqual({ B: Buffer.from([0, 1, 254, 255]).toString("base64") });
    expect(Item?.bs).toEqual({ BS: ["Bw=="] });
  });

  it("queries by key condition, a page at a time through LastEvaluatedKey", async () => {
    for (const k of ["q:1", "q:2", "q:3", "q:4", "q:5", "r:1"]) {
      await client.putItem({ TableName: "kv-table", Item: { ...key(k), v: { S: k } } });
    }
    const seen: string[] = [];
    let pages = 0;
    let start: Record<string, { S?: string }> | undefined;
    do {
      const page = await client.query({
        TableName: "kv-table",
        KeyConditionExpression: "#p = :p AND begins_with(#k, :prefix)",
        ExpressionAttributeNames: { "#p": "_p", "#k": "_k" },
        ExpressionAttributeValues: { ":p": { S: "t" }, ":prefix": { S: "q:" } },
        ProjectionExpression: "#k",
        ConsistentRead: true,
        Limit: 2,
        ...(start ? { ExclusiveStartKey: start } : {}),
      });
      pages++;
      for (const item of page.Items ?? []) {
        expect(Object.keys(item)).toEqual(["_k"]);
        seen.push(item._k?.S as string);
      }
      start = page.LastEvaluatedKey;
    } while (start);
    expect(seen).toEqual(["q:1", "q:2", "q:3", "q:4", "q:5"]);
    expect(pages).toBeGreaterThanOrEqual(3);
  });

  it("names a failure by the answer's __type: a missing table, a failed condition, an invalid request", async () => {
    const missing = await client.getItem({ TableName: "no-such-table", Key: key("x") }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(AwsError);
    expect(missing).toMatchObject({ name: "ResourceNotFoundException", statusCode: 400 });
    expect((missing as Error).message).toMatch(/resource not found|non-existent/i);

    await client.putItem({ TableName: "kv-table", Item: key("once") });
    const again = await client
      .putItem({
        TableName: "kv-table",
        Item: key("once"),
        ConditionExpression: "attribute_not_exists(#k)",
        ExpressionAttributeNames: { "#k": "_k" },
      })
      .catch((e: unknown) => e);
    expect(again).toMatchObject({ name: "ConditionalCheckFailedException", statusCode: 400 });

    const invalid = await client
      .query({ TableName: "kv-table", KeyConditionExpression: "#p = = :p", ExpressionAttributeNames: { "#p": "_p" } })
      .catch((e: unknown) => e);
    expect(invalid).toMatchObject({ name: "ValidationException", statusCode: 400 });
  });

  it("finds DynamoDB through AWS_ENDPOINT_URL when AWS_ENDPOINT_URL_DYNAMODB is not set", async () => {
    const general = new DynamoDbClient(
      { ...ENV, AWS_ENDPOINT_URL: env.AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_LAMBDA: "http://127.0.0.1:9" },
      FAST_RETRY,
    );
    await general.putItem({ TableName: "kv-table", Item: { ...key("general"), v: { S: "1" } } });
    expect((await client.getItem({ TableName: "kv-table", Key: key("general") })).Item?.v).toEqual({ S: "1" });
  });
});

describe("kv stores over DynamoDbClient, against dynalite", () => {
  it("sets, gets, lists by prefix and deletes", async () => {
    const stores = new DynamoKvStores(client, { profiles: "kv-table" });
    await stores.set("profiles", "user:1", { name: "Ann", tags: ["a"], n: 1.5, ok: true, none: null });
    await stores.set("profiles", "user:2", { name: "Bo" });
    await stores.set("profiles", "admin:1", { name: "Cy" });
    expect(await stores.get("profiles", "user:1")).toEqual({ name: "Ann", tags: ["a"], n: 1.5, ok: true, none: null });
    const keys: string[] = [];
    for await (const k of stores.keys("profiles", "user:")) keys.push(k);
    expect(keys).toEqual(["user:1", "user:2"]);
    await stores.delete("profiles", "user:1");
    expect(await stores.get("profiles", "user:1")).toBeUndefined();
  });

  it("reads bytes in a value as base64", async () => {
    const stores = new DynamoKvStores(client, { profiles: "kv-table" });
    expect(await stores.get("profiles", "bytes")).toEqual({ b: "AAH+/w==" });
  });

  it("turns a missing table into NOT_FOUND and a refused key into INVALID_ARGUMENT", async () => {
    const stores = new DynamoKvStores(client, { items: "stack-ItemsKvTable-gone" });
    await expect(stores.get("items", "k")).rejects.toMatchObject({
      code: status.NOT_FOUND,
      message: expect.stringContaining(
        'kv("items"): its table "stack-ItemsKvTable-gone" does not exist; deploy the stack again',
      ),
    });
    const ok = new DynamoKvStores(client, { items: "kv-table" });
    // DynamoDB limits a sort key to 1024 bytes.
    await expect(ok.set("items", "k".repeat(1025), { a: 1 })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      message: expect.stringMatching(/^kv\("items"\): DynamoDB refused the request: .*1024/),
    });
  });
});

describe("the connections table over DynamoDbClient, against dynalite", () => {
  it("adds, reads, lists and removes connections, leaving out expired records", async () => {
    const table = new ConnectionsTable(client, "connections");
    const info = {
      connectionId: "L0SM9cOFvHcCIhw=",
      connectedAt: Date.now(),
      query: { room: { value: ["a"] } },
      headers: { "user-agent": { value: ["test"] } },
      remoteAddress: "192.0.2.1",
    };
    await table.add("chat", info);
    await table.add("chat", { ...info, connectionId: "old", connectedAt: Date.now() - 3 * 60 * 60 * 1000 });
    await table.add("other", { ...info, connectionId: "elsewhere" });
    expect(await table.get("chat", info.connectionId)).toEqual(info);
    expect(await table.list("chat")).toEqual([info]);
    await table.remove("chat", info.connectionId);
    expect(await table.get("chat", info.connectionId)).toBeUndefined();
  });

  it("forgets a gone connection with its rooms, but keeps one that connected after the cutoff (it may be opening)", async () => {
    const table = new ConnectionsTable(client, "connections");
    const now = Date.now();
    const info = (connectionId: string, connectedAt: number) => ({
      connectionId,
      connectedAt,
      query: {},
      headers: {},
      remoteAddress: "192.0.2.1",
    });
    await table.add("gone", info("Opening=", now));
    await table.add("gone", info("Left=", now - 60_000));
    expect(await table.join("gone", "Opening=", "lobby")).toBe(true);
    expect(await table.join("gone", "Left=", "lobby")).toBe(true);
    const cutoff = now - 35_000;
    expect(await table.forgetGone("gone", "Opening=", cutoff)).toBe(false);
    expect(await table.forgetGone("gone", "Left=", cutoff)).toBe(true);
    expect(await table.forgetGone("gone", "Never=", cutoff)).toBe(true);
    expect((await table.list("gone")).map((c) => c.connectionId)).toEqual(["Opening="]);
    expect(await table.members("gone", "lobby")).toEqual(["Opening="]);
  });

  it("keeps a connection's first 100 query values, by name in order of first appearance", async () => {
    const table = new ConnectionsTable(client, "connections");
    const query = dict<{ value: string[] }>();
    for (let i = 0; i < 300; i++) query[`k${i}`] = { value: i === 1 ? ["a", "b", "c"] : [""] };
    await table.add("chat", { connectionId: "many", connectedAt: Date.now(), query, headers: {}, remoteAddress: "" });
    const kept = (await table.get("chat", "many"))?.query ?? {};
    expect(Object.keys(kept)).toEqual(Array.from({ length: 98 }, (_, i) => `k${i}`));
    expect(kept.k1?.value).toEqual(["a", "b", "c"]);
    await table.remove("chat", "many");
  });

  it("stores no cookie, authorization or other header outside KEPT_HEADERS, and keeps a short query whole", async () => {
    const table = new ConnectionsTable(client, "connections");
    const headers = {
      cookie: { value: ["session=s3cret"] },
      authorization: { value: ["Bearer t0ken"] },
      "x-api-key": { value: ["k3y"] },
      "x-forwarded-for": { value: ["198.51.100.7, 192.0.2.1"] },
      "user-agent": { value: ["test-agent"] },
      origin: { value: ["https://app.example"] },
      "sec-websocket-protocol": { value: ["chat.v1", "x".repeat(5000)] },
    };
    const info = {
      connectionId: "privacy-1",
      connectedAt: Date.now(),
      query: { room: { value: ["a", "b"] }, name: { value: ["ann"] } },
      headers,
      remoteAddress: "192.0.2.1",
    };
    await table.add("chat", info);
    // What DynamoDB holds, read past our table class.
    const raw = await client.getItem({
      TableName: "connections",
      Key: { socket: { S: "chat" }, id: { S: "privacy-1" } },
      ConsistentRead: true,
    });
    const stored = JSON.stringify(raw.Item);
    for (const secret of ["s3cret", "t0ken", "k3y", "198.51.100.7", "cookie", "authorization"]) {
      expect(stored).not.toContain(secret);
    }
    expect(await table.get("chat", "privacy-1")).toEqual({
      ...info,
      headers: {
        "user-agent": { value: ["test-agent"] },
        origin: { value: ["https://app.example"] },
        "sec-websocket-protocol": { value: ["chat.v1", "x".repeat(1024)] },
      },
    });
    expect(KEPT_HEADERS).toEqual(["origin", "sec-websocket-protocol", "user-agent"]);
    await table.remove("chat", "privacy-1");
  });
});

/**
 * The client with a gate in front of the writes to a room's membership items: `hold()` makes the
 * next such write wait until the returned function is called, so a test lands one invocation's
 * write after another's, as side-by-side Lambda invocations can.
 */
function gated(inner: DynamoDbClient) {
  let held: Promise<void> | undefined;
  const membership = (key: Item) => key.socket?.S?.includes("#") === true;
  const gate = async () => {
    const wait = held;
    held = undefined;
    await wait;
  };
  const db: ConnectionsDynamoDb = {
    getItem: (input) => inner.getItem(input),
    query: (input) => inner.query(input),
    updateItem: (input) => inner.updateItem(input),
    putItem: async (input) => {
      if (membership(input.Item)) await gate();
      return inner.putItem(input);
    },
    deleteItem: async (input) => {
      if (membership(input.Key)) await gate();
      return inner.deleteItem(input);
    },
  };
  const hold = () => {
    let release = () => {};
    held = new Promise<void>((resolve) => {
      release = resolve;
    });
    return release;
  };
  return { db, hold };
}

describe("rooms in the connections table, their writes landing out of order, against dynalite", () => {
  const info = (connectionId: string) => ({
    connectionId,
    connectedAt: Date.now(),
    query: {},
    headers: {},
    remoteAddress: "192.0.2.1",
  });

  it("leaves a connection out of a room when its join's membership lands after a later leave", async () => {
    const { db, hold } = gated(client);
    const table = new ConnectionsTable(db, "connections");
    await table.add("chat", info("late-join"));
    const release = hold();
    const joining = table.join("chat", "late-join", "blue"); // its membership write waits
    await new Promise((r) => setTimeout(r, 50));
    expect(await table.leave("chat", "late-join", "blue")).toBe(true);
    release();
    expect(await joining).toBe(true);
    expect(await table.roomsOf("chat", "late-join")).toEqual([]);
    expect(await table.members("chat", "blue")).toEqual([]);
    await table.remove("chat", "late-join");
  });

  it("keeps a connection in a room when a leave's delete lands after a later join", async () => {
    const { db, hold } = gated(client);
    const table = new ConnectionsTable(db, "connections");
    await table.add("chat", info("late-leave"));
    await table.join("chat", "late-leave", "green");
    const release = hold();
    const leaving = table.leave("chat", "late-leave", "green"); // its membership delete waits
    await new Promise((r) => setTimeout(r, 50));
    expect(await table.join("chat", "late-leave", "green")).toBe(true);
    release();
    expect(await leaving).toBe(true);
    expect(await table.roomsOf("chat", "late-leave")).toEqual(["green"]);
    expect(await table.members("chat", "green")).toEqual(["late-leave"]);
    await table.remove("chat", "late-leave");
    expect(await table.members("chat", "green")).toEqual([]);
  });

  it("leaves no membership behind a join whose write lands after its connection's disconnect", async () => {
    const { db, hold } = gated(client);
    const table = new ConnectionsTable(db, "connections");
    await table.add("chat", info("late-gone"));
    const release = hold();
    const joining = table.join("chat", "late-gone", "red");
    await new Promise((r) => setTimeout(r, 50));
    await table.remove("chat", "late-gone");
    release();
    await joining;
    expect(await table.members("chat", "red")).toEqual([]);
  });
});

describe("DynamoDbClient against answers only AWS gives (a loopback server)", () => {
  const accessDenied = {
    status: 400,
    headers: { "content-type": "application/x-amz-json-1.0" },
    body: JSON.stringify({
      __type: "com.amazon.coral.service#AccessDeniedException",
      Message:
        "User: arn:aws:sts::123456789012:assumed-role/app-chat/app-chat is not authorized to perform: dynamodb:PutItem on resource: arn:aws:dynamodb:eu-west-1:123456789012:table/stack-ItemsKvTable-1",
    }),
  };

  it("signs each call for dynamodb and names the operation in X-Amz-Target", async () => {
    const server = await loopback(() => ({ status: 200, body: "{}" }));
    const c = new DynamoDbClient({ ...ENV, AWS_ENDPOINT_URL_DYNAMODB: server.url }, FAST_RETRY);
    await c.getItem({ TableName: "t", Key: key("k"), ConsistentRead: true });
    await c.putItem({ TableName: "t", Item: key("k") });
    await c.deleteItem({ TableName: "t", Key: key("k") });
    await c.query({ TableName: "t", KeyConditionExpression: "#p = :p" });
    expect(server.requests.map((r) => [r.method, r.path, r.headers["x-amz-target"]])).toEqual([
      ["POST", "/", "DynamoDB_20120810.GetItem"],
      ["POST", "/", "DynamoDB_20120810.PutItem"],
      ["POST", "/", "DynamoDB_20120810.DeleteItem"],
      ["POST", "/", "DynamoDB_20120810.Query"],
    ]);
    for (const r of server.requests) {
      expect(r.headers["content-type"]).toBe("application/x-amz-json-1.0");
      expectSigned(r, "dynamodb");
    }
    expect(JSON.parse(server.requests[0]?.body.toString() ?? "")).toEqual({
      TableName: "t",
      Key: key("k"),
      ConsistentRead: true,
    });
  });

  it("turns AccessDenied into PERMISSION_DENIED naming the missing .allow(), without retrying", async () => {
    const server = await loopback(() => accessDenied);
    const stores = new DynamoKvStores(
      new DynamoDbClient({ ...ENV, AWS_ENDPOINT_URL_DYNAMODB: server.url }, FAST_RETRY),
      {
        items: "stack-ItemsKvTable-1",
      },
    );
    await expect(stores.set("items", "k", { a: 1 })).rejects.toMatchObject({
      code: status.PERMISSION_DENIED,
      message: `kv("items"): AWS refused to set table "stack-ItemsKvTable-1" (${JSON.parse(accessDenied.body).Message}); add .allow("set") to kv("items") in this service and deploy again`,
    });
    await expect(stores.get("items", "k")).rejects.toMatchObject({
      message: expect.stringMatching(/AWS refused to read table .* add \.allow\("get"\)/),
    });
    expect(server.requests).toHaveLength(2);
  });

  it("retries throttling three times in all, then says RESOURCE_EXHAUSTED", async () => {
    const server = await loopback(() => ({
      status: 400,
      body: JSON.stringify({
        __type: "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        message: "The level of configured provisioned throughput for the table was exceeded.",
      }),
    }));
    const stores = new DynamoKvStores(
      new DynamoDbClient({ ...ENV, AWS_ENDPOINT_URL_DYNAMODB: server.url }, FAST_RETRY),
      {
        items: "t",
      },
    );
    await expect(stores.get("items", "k")).rejects.toMatchObject({
      code: status.RESOURCE_EXHAUSTED,
      message:
        'kv("items"): DynamoDB throttled the request; retry later (The level of configured provisioned throughput for the table was exceeded.)',
    });
    expect(server.requests).toHaveLength(3);
  });

  it("gets through when throttling or a 5xx passes, each attempt signed anew", async () => {
    const answers = [
      {
        status: 400,
        body: JSON.stringify({
          __type: "com.amazonaws.dynamodb.v20120810#ThrottlingException",
          message: "Rate exceeded",
        }),
      },
      {
        status: 500,
        body: JSON.stringify({ __type: "com.amazonaws.dynamodb.v20120810#InternalServerError", message: "oops" }),
      },
      { status: 200, body: JSON.stringify({ Item: { ...key("k"), _v: { M: { a: { N: "1" } } } } }) },
    ];
    const server = await loopback(() => answers.shift() ?? { status: 599 });
    const stores = new DynamoKvStores(
      new DynamoDbClient({ ...ENV, AWS_ENDPOINT_URL_DYNAMODB: server.url }, FAST_RETRY),
      {
        items: "t",
      },
    );
    expect(await stores.get("items", "k")).toEqual({ a: 1 });
    expect(server.requests).toHaveLength(3);
    for (const r of server.requests) expectSigned(r, "dynamodb");
  });

  it("says UNAVAILABLE, with AWS's error, when 5xx answers last", async () => {
    const server = await loopback(() => ({
      status: 503,
      body: JSON.stringify({ __type: "ServiceUnavailable", message: "try later" }),
    }));
    const stores = new DynamoKvStores(
      new DynamoDbClient({ ...ENV, AWS_ENDPOINT_URL_DYNAMODB: server.url }, FAST_RETRY),
      {
        items: "t",
      },
    );
    await expect(stores.delete("items", "k")).rejects.toMatchObject({
      code: status.UNAVAILABLE,
      message: 'kv("items"): DynamoDB delete failed: ServiceUnavailable: try later',
    });
    expect(server.requests).toHaveLength(3);
  });

  it("says UNAVAILABLE, naming what to set, without credentials; and sends nothing", async () => {
    const server = await loopback(() => ({ status: 200, body: "{}" }));
    const stores = new DynamoKvStores(
      new DynamoDbClient({ AWS_REGION: "eu-west-1", AWS_ENDPOINT_URL_DYNAMODB: server.url }, FAST_RETRY),
      { items: "t" },
    );
    await expect(stores.get("items", "k")).rejects.toMatchObject({
      code: status.UNAVAILABLE,
      message: expect.stringContaining("CredentialsError: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set"),
    });
    expect(server.requests).toHaveLength(0);
  });
});
