// The committed generated code (protoc-gen-es's *_pb.ts and our protoc-gen-fastcodec's *_fast.ts)
// must be exactly what `buf generate` makes from proto/: a change to a .proto file without
// regenerating (pnpm gen) fails here. And a field added to a .proto reaches the fast codecs with no
// hand edit: the second test adds fields to a copy of proto/ and compares the codecs generated from
// it with protobuf-es.
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { type DescMessage, fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { expect, it } from "vitest";
import { decodeServerMessage, encodeServerMessage } from "../src/gen/nitric/proto/websockets/v1/websockets_fast.js";
import { message, plain } from "./fastcodec-props.js";

const contracts = fileURLToPath(new URL("..", import.meta.url));
const proto = fileURLToPath(new URL("../../../proto", import.meta.url));

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

it("committed generated code matches a fresh buf generate", () => {
  const out = mkdtempSync(join(tmpdir(), "nitric-like-gen-"));
  try {
    const bin = join(contracts, "node_modules", ".bin");
    // buf.gen.yaml writes to ../packages/contracts/src/gen relative to the output base.
    const result = spawnSync(join(bin, "buf"), ["generate", "--output", join(out, "base")], {
      cwd: proto,
      env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
      encoding: "utf8",
    });
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    const fresh = join(out, "packages", "contracts", "src", "gen");
    const committed = join(contracts, "src", "gen");
    const list = (d: string) =>
      files(d)
        .map((f) => relative(d, f))
        .sort();
    expect(list(fresh)).toEqual(list(committed));
    // Both plugins' output is compared.
    expect(list(fresh)).toContain(join("nitric", "proto", "websockets", "v1", "websockets_fast.ts"));
    expect(list(fresh)).toContain(join("nitric", "proto", "kvstore", "v1", "kvstore_fast.ts"));
    for (const f of list(fresh)) {
      expect(readFileSync(join(fresh, f), "utf8"), `${f} differs: run pnpm gen`).toBe(
        readFileSync(join(committed, f), "utf8"),
      );
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

/** Runs buf generate in `cwd` with the package's tools on PATH. */
function bufGenerate(cwd: string) {
  const bin = join(contracts, "node_modules", ".bin");
  return spawnSync(join(bin, "buf"), ["generate"], {
    cwd,
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
    encoding: "utf8",
  });
}

it("a field added to a hot message's .proto is encoded and decoded by the regenerated codecs with no hand edit", async () => {
  // Inside the package, so that the generated files find @bufbuild/protobuf.
  const dir = mkdtempSync(join(contracts, "test", ".gen-"));
  try {
    cpSync(proto, join(dir, "proto"), { recursive: true });
    const wsProto = join(dir, "proto", "nitric", "proto", "websockets", "v1", "websockets.proto");
    const added = [
      "  string added_note = 1500;",
      "  repeated uint32 added_codes = 1501;",
      "  map<string, string> added_tags = 1502;",
      "  optional double added_weight = 1503;",
      "  WebsocketReply added_reply = 1504;",
      "  repeated sfixed32 added_fixed = 1505;",
      "  WebsocketEventType added_kind = 1506;",
    ].join("\n");
    const source = readFileSync(wsProto, "utf8");
    expect(source).toContain("message WebsocketMessageEvent {\n");
    writeFileSync(
      wsProto,
      source.replace("message WebsocketMessageEvent {\n", `message WebsocketMessageEvent {\n${added}\n`),
    );
    // The real buf.gen.yaml, its outputs moved into the temporary directory.
    const out = join(dir, "out");
    const runtime = relative(out, join(contracts, "src", "fastcodec", "runtime.js"));
    const yaml = readFileSync(join(proto, "buf.gen.yaml"), "utf8")
      .replaceAll("../packages/contracts/src/gen", "../out")
      .replaceAll("../packages/contracts/scripts/", `${join(contracts, "scripts")}/`)
      .replace("runtime=./../fastcodec/runtime.js", `runtime=./${runtime}`);
    expect(yaml).toContain(`runtime=./${runtime}`);
    writeFileSync(join(dir, "proto", "buf.gen.yaml"), yaml);
    const result = bufGenerate(join(dir, "proto"));
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);

    const ws = join(out, "nitric", "proto", "websockets", "v1");
    const pb = await import(pathToFileURL(join(ws, "websockets_pb.ts")).href);
    const fast = await import(pathToFileURL(join(ws, "websockets_fast.ts")).href);
    const schema = pb.ServerMessageSchema as DescMessage;
    const event = pb.WebsocketMessageEventSchema as DescMessage;
    expect(event.fields.map((f) => f.name)).toContain("added_kind");

    // One message with every new field set, by hand: each must come back as a field, not unknown.
    const init = {
      id: "7",
      content: {
        case: "websocketEventRequest",
        value: {
          socketName: "chat",
          connectionId: "c1",
          websocketEvent: {
            case: "message",
            value: {
              body: new Uint8Array([1, 2]),
              addedNote: "héllo",
              addedCodes: [1, 300, 2 ** 32 - 1],
              addedTags: { a: "b", "": "" },
              addedWeight: 0,
              addedReply: { data: new Uint8Array([3]), binary: true },
              addedFixed: [-1, 5],
              addedKind: 2,
            },
          },
        },
      },
    };
    const bytes = fast.encodeServerMessage(init) as Buffer;
    const { create } = await import("@bufbuild/protobuf");
    expect(Buffer.compare(bytes, Buffer.from(toBinary(schema, create(schema, init as never))))).toBe(0);
    const decoded = fast.decodeServerMessage(bytes);
    const value = decoded.content.value.websocketEvent.value;
    expect(value.$unknown).toBeUndefined();
    expect(value.addedNote).toBe("héllo");
    expect(value.addedCodes).toEqual([1, 300, 2 ** 32 - 1]);
    expect(value.addedTags).toEqual({ a: "b", "": "" });
    expect(value.addedWeight).toBe(0);
    expect(value.addedReply.binary).toBe(true);
    expect(value.addedFixed).toEqual([-1, 5]);
    expect(value.addedKind).toBe(2);

    // The committed codecs, which do not know the new fields, keep them as unknown and write them back.
    const old = decodeServerMessage(bytes);
    expect(Buffer.compare(encodeServerMessage(old), bytes)).toBe(0);

    // And random messages of the new schema, every field drawn from its descriptor.
    fc.assert(
      fc.property(message(schema), (m) => {
        const expected = toBinary(schema, m as never);
        const written = fast.encodeServerMessage(m) as Buffer;
        expect(Buffer.compare(written, Buffer.from(expected))).toBe(0);
        expect(plain(fast.decodeServerMessage(written))).toEqual(plain(fromBinary(schema, expected)));
      }),
      { numRuns: 200 },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
