// The package's entry modules (src/<name>.ts, `@nitric-like/contracts/<name>`) re-export protobuf-es's
// generated module and put the generated services in place of its descriptors. A service added to a
// .proto but not to its entry would be protobuf-es's descriptor under the same name: no codecs, and
// protobuf-es back in every bundle that uses it. Every service of every file must be ours.
import { describe, expect, it } from "vitest";
import * as authorize from "../src/authorize.js";
import * as connections from "../src/connections.js";
import * as health from "../src/health.js";
import * as kvstore from "../src/kvstore.js";
import * as resources from "../src/resources.js";
import * as rooms from "../src/rooms.js";
import * as secrets from "../src/secrets.js";
import * as websockets from "../src/websockets.js";

const entries = { authorize, connections, health, kvstore, resources, rooms, secrets, websockets };

describe("the contracts' entry modules", () => {
  for (const [name, entry] of Object.entries(entries)) {
    it(`${name}: exports each service of its file as the generated one, every method with its codecs`, () => {
      const files = Object.entries(entry).filter(([key]) => key.startsWith("file_"));
      expect(files, "the entry re-exports its file's protobuf-es module").toHaveLength(1);
      const file = files[0]?.[1] as { services: { name: string; typeName: string; methods: { name: string }[] }[] };
      expect(file.services.length).toBeGreaterThan(0);
      for (const desc of file.services) {
        const service = (entry as Record<string, unknown>)[desc.name] as {
          typeName: string;
          methods: { name: string; input: { encode: unknown; decode: unknown } }[];
        };
        expect(service.typeName).toBe(desc.typeName);
        expect(service.methods.map((m) => m.name)).toEqual(desc.methods.map((m) => m.name));
        for (const m of service.methods) {
          expect(typeof m.input.encode, `${desc.typeName}/${m.name}`).toBe("function");
          expect(typeof m.input.decode, `${desc.typeName}/${m.name}`).toBe("function");
        }
      }
    });
  }
});
