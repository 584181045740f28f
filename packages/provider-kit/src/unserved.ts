/**
 * Nitric's contract methods for the kinds of resource nitric-like does not serve. A service reaches
 * them through `@nitric/sdk`'s `topics()`, `queues()`, `storage()` (and the other languages' SDKs'
 * like clients), which declare nothing, so the collect pass cannot refuse them before `run`
 * starts; each call is told what it used and what is served, instead of a bare UNIMPLEMENTED.
 * Paths and kinds are Nitric v1's (nitric/proto/<domain>/v1/<domain>.proto).
 */
import type { MethodKind } from "@nitric-like/rpc";
import { SERVED_KINDS } from "@nitric-like/spec";

/** Each of Nitric's services we do not serve: its full name, what it is, and its methods' kinds. */
const NITRIC_UNSERVED: { service: string; what: string; methods: Record<string, MethodKind> }[] = [
  { service: "nitric.proto.apis.v1.Api", what: "an api", methods: { Serve: "bidi_streaming", ApiDetails: "unary" } },
  { service: "nitric.proto.http.v1.Http", what: "an http proxy", methods: { Proxy: "bidi_streaming" } },
  { service: "nitric.proto.topics.v1.Topics", what: "a topic", methods: { Publish: "unary" } },
  { service: "nitric.proto.topics.v1.Subscriber", what: "a topic", methods: { Subscribe: "bidi_streaming" } },
  {
    service: "nitric.proto.queues.v1.Queues",
    what: "a queue",
    methods: { Enqueue: "unary", Dequeue: "unary", Complete: "unary" },
  },
  {
    service: "nitric.proto.storage.v1.Storage",
    what: "a bucket",
    methods: {
      Read: "unary",
      Write: "unary",
      Delete: "unary",
      PreSignUrl: "unary",
      ListBlobs: "unary",
      Exists: "unary",
    },
  },
  { service: "nitric.proto.storage.v1.StorageListener", what: "a bucket", methods: { Listen: "bidi_streaming" } },
  { service: "nitric.proto.schedules.v1.Schedules", what: "a schedule", methods: { Schedule: "bidi_streaming" } },
  { service: "nitric.proto.sql.v1.Sql", what: "an sql database", methods: { ConnectionString: "unary" } },
  { service: "nitric.proto.batch.v1.Batch", what: "a job", methods: { SubmitJob: "unary" } },
  { service: "nitric.proto.batch.v1.JobHandler", what: "a job", methods: { HandleJob: "bidi_streaming" } },
];

/**
 * Nitric's methods for what nitric-like does not serve, each with its kind and the message a call
 * from `service` gets (with UNIMPLEMENTED): the kind of resource used, and what is served.
 */
export function unservedMethods(service: string): { path: string; kind: MethodKind; message: string }[] {
  return NITRIC_UNSERVED.flatMap(({ service: name, what, methods }) =>
    Object.entries(methods).map(([method, kind]) => {
      const path = `/${name}/${method}`;
      return {
        path,
        kind,
        message: `${path}: service ${JSON.stringify(service)} uses ${what}, a kind of resource nitric-like does not serve; remove it from the service (nitric-like serves ${SERVED_KINDS})`,
      };
    }),
  );
}
