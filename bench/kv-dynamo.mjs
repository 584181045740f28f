#!/usr/bin/env node
// keys() of a kv store on DynamoDB (dynalite, in this process), before and after hash sharding,
// side by side in the same run. "before" is the single-partition listing the runtime made until
// sharding (every item under _p = "k": one Query, paged by DynamoDB's 1 MB); "after" is
// DynamoKvStores.keys(): one Query per shard (16) in parallel, merged in byte order. Each kind
// lists the whole store (--keys keys), a prefix matching a tenth of it, and a prefix matching one
// key, taking turns for --rounds rounds; the table shows the median and the 90th percentile.
// dynalite serves every Query on this one thread, so the 16 queries cost their sum here; on AWS
// they run on separate partitions and cost about the slowest one. It cannot show throttling: see
// providers/aws/README.md for the throughput arithmetic.
// Needs `pnpm build` (it imports providers/aws/dist).
// Usage: node bench/kv-dynamo.mjs [--keys 1000] [--rounds 30]
import { createRequire } from "node:module";
import { parseArgs } from "node:util";
import { startDynalite } from "../providers/aws/dist/emulator/run.js";
import { DynamoDbClient, DynamoKvStores } from "../providers/aws/dist/runtime/index.js";

const { values } = parseArgs({
  options: { keys: { type: "string", default: "1000" }, rounds: { type: "string", default: "30" } },
});
const KEYS = Number(values.keys);
const ROUNDS = Number(values.rounds);
const require = createRequire(new URL("../providers/aws/package.json", import.meta.url));
const { CreateTableCommand, DescribeTableCommand, DynamoDBClient } = require("@aws-sdk/client-dynamodb");

const { endpoint, credentials, close } = await startDynalite();
const env = {
  AWS_REGION: "us-east-1",
  AWS_ACCESS_KEY_ID: credentials.accessKeyId,
  AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
  AWS_ENDPOINT_URL_DYNAMODB: endpoint,
};
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
const sdk = new DynamoDBClient({ endpoint, region: env.AWS_REGION, credentials });
for (const TableName of ["before", "after"]) {
  await sdk.send(
    new CreateTableCommand({
      TableName,
      KeySchema: [
        { AttributeName: "_p", KeyType: "HASH" },
        { AttributeName: "_k", KeyType: "RANGE" },
      ],
      AttributeDefinitions: [
        { AttributeName: "_p", AttributeType: "S" },
        { AttributeName: "_k", AttributeType: "S" },
      ],
      BillingMode: "PAY_PER_REQUEST",
    }),
  );
  // dynalite answers CreateTable while the table is still CREATING.
  while ((await sdk.send(new DescribeTableCommand({ TableName }))).Table?.TableStatus !== "ACTIVE") {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
sdk.destroy();

const client = new DynamoDbClient(env);
const stores = new DynamoKvStores(client, { s: "after" });
const keys = Array.from({ length: KEYS }, (_, i) => `user:${String(i).padStart(6, "0")}`);
const value = { name: "Ann", n: 1 };
for (let i = 0; i < keys.length; i += 32) {
  await Promise.all(
    keys.slice(i, i + 32).flatMap((k) => [
      client.putItem({
        TableName: "before",
        Item: { _p: { S: "k" }, _k: { S: k }, _v: { M: { name: { S: "Ann" }, n: { N: "1" } } } },
      }),
      stores.set("s", k, value),
    ]),
  );
}

/** The listing as the runtime made it before sharding. */
async function before(prefix) {
  const out = [];
  let start;
  do {
    const page = await client.query({
      TableName: "before",
      KeyConditionExpression: prefix === "" ? "#p = :p" : "#p = :p AND begins_with(#k, :prefix)",
      ExpressionAttributeNames: { "#p": "_p", "#k": "_k" },
      ExpressionAttributeValues: prefix === "" ? { ":p": { S: "k" } } : { ":p": { S: "k" }, ":prefix": { S: prefix } },
      ProjectionExpression: "#k",
      ConsistentRead: true,
      ...(start ? { ExclusiveStartKey: start } : {}),
    });
    for (const item of page.Items ?? []) out.push(item._k.S);
    start = page.LastEvaluatedKey;
  } while (start);
  return out;
}

async function after(prefix) {
  const out = [];
  for await (const k of stores.keys("s", prefix)) out.push(k);
  return out;
}

// For 1,000 keys "user:0000": user:000000 to user:000099.
const tenth = keys[0].slice(0, -(String(KEYS).length - 2));
const cases = [
  ["whole store", ""],
  ["a tenth", tenth],
  ["one key", keys[KEYS - 1]],
];
const times = new Map();
for (let round = -2; round < ROUNDS; round++) {
  for (const [label, prefix] of cases) {
    for (const [kind, list] of [
      ["before", before],
      ["after", after],
    ]) {
      const t = process.hrtime.bigint();
      const listed = await list(prefix);
      const ms = Number(process.hrtime.bigint() - t) / 1e6;
      if (round < 0) {
        // Warm-up rounds; also checks both list the same keys.
        const expected = keys.filter((k) => k.startsWith(prefix));
        if (JSON.stringify(listed) !== JSON.stringify(expected))
          throw new Error(`${kind} listed other keys for ${label}`);
        continue;
      }
      const id = `${label}|${kind}`;
      times.set(id, [...(times.get(id) ?? []), ms]);
    }
  }
}
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))];
console.log(`keys() on dynalite, ${KEYS} keys, ${ROUNDS} rounds (ms: median / p90)`);
console.log("| listing | keys | before (1 partition) | after (16 shards) |");
console.log("| --- | --- | --- | --- |");
for (const [label, prefix] of cases) {
  const n = keys.filter((k) => k.startsWith(prefix)).length;
  const cell = (kind) => {
    const xs = times.get(`${label}|${kind}`);
    return `${pct(xs, 0.5).toFixed(1)} / ${pct(xs, 0.9).toFixed(1)}`;
  };
  console.log(`| ${label} (\`${prefix}\`) | ${n} | ${cell("before")} | ${cell("after")} |`);
}
await close();
