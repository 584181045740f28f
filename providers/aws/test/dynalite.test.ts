// dynalite as the emulator runs it, in memory and on disk: every Query and Scan closes the store
// iterator it opened (dynalite 4.0.0 alone leaves each one open; see closeDynaliteIterators).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import v8 from "node:v8";
import { PutItemCommand, QueryCommand, ScanCommand } from "@aws-sdk/client-dynamodb";
import { expect, it } from "vitest";
import { dynaliteIteratorClasses, startDynalite } from "../src/emulator/dynalite.js";
import { CREDENTIALS, createTable, ENV, sdkDynamo } from "./helpers.js";

/** Store iterators alive now (queryObjects collects garbage first). */
function openIterators(): number {
  return dynaliteIteratorClasses().reduce(
    (n, c) => n + v8.queryObjects(c as unknown as new () => unknown, { format: "count" }),
    0,
  );
}

it.each([
  ["in memory", false],
  ["on disk", true],
])("closes the iterator of every Query and Scan, whole or cut short by Limit (%s)", async (_, onDisk) => {
  const dir = onDisk ? mkdtempSync(join(tmpdir(), "nitric-like-dynalite-")) : undefined;
  const db = await startDynalite(dir, { credentials: CREDENTIALS, region: ENV.AWS_REGION });
  const sdk = sdkDynamo(db.endpoint);
  try {
    await createTable(sdk, "items", "p", "s");
    for (let i = 0; i < 10; i++) {
      await sdk.send(new PutItemCommand({ TableName: "items", Item: { p: { S: "a" }, s: { S: `k${i}` } } }));
    }
    const before = openIterators();
    for (let i = 0; i < 60; i++) {
      const result = await sdk.send(
        new QueryCommand({
          TableName: "items",
          KeyConditionExpression: "p = :p",
          ExpressionAttributeValues: { ":p": { S: "a" } },
          ...(i % 2 === 0 ? { Limit: 3 } : {}),
        }),
      );
      expect(result.Items).toHaveLength(i % 2 === 0 ? 3 : 10);
      if (i % 10 === 0) await sdk.send(new ScanCommand({ TableName: "items" }));
    }
    // A stream's end closes its iterator a turn later.
    await new Promise((r) => setTimeout(r, 100));
    expect(openIterators() - before).toBeLessThan(5);
  } finally {
    sdk.destroy();
    await db.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
});
