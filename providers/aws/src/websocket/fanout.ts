/**
 * Broadcast at scale on AWS. A broadcast to more than INLINE_MAX connections is not posted by the
 * calling function: it reads the socket's connection ids a page at a time and hands each page to
 * an asynchronous invocation of itself (a BroadcastEvent); each of those posts its page's frames
 * in parallel (postPage), within the account's PostToConnection throttle, which all of them
 * share: each invocation starts with few calls in flight, doubles them per round trip until API
 * Gateway first answers 429, then adds one per round trip and halves them on each 429, and retries a throttled post after a
 * jittered, growing wait. A 410 Gone prunes the record. Only a throttled post is retried (API
 * Gateway did not take it); any other failure is counted and logged, never retried, so a frame
 * is posted at most once per page invocation, and the function never fails the invocation
 * (Lambda has nothing to retry; the template's EventInvokeConfig sets its retries to 0).
 */
import type { Item } from "../aws/dynamodb.js";
import type { ManagementApi } from "../aws/management.js";

/** Connection ids per asynchronous invocation: 1,000 ids and a 128 KB frame in base64 fit Lambda's 256 KB event. */
export const PAGE_SIZE = 1000;
/**
 * Broadcasts to at most this many connections are posted by the calling function itself: 100
 * posts, 32 in flight at ~15 ms each, take ~60 ms, about what one Invoke call and the start of
 * the invocation it queues take before the first frame of a fanned-out broadcast goes out.
 */
export const INLINE_MAX = 100;
/** PostToConnection calls an invocation starts with, and the most it keeps in flight. */
export const START_CONCURRENCY = 8;
export const MAX_CONCURRENCY = 64;

/** A page of a broadcast, handed by the calling function to an asynchronous invocation of itself. */
export interface BroadcastEvent {
  nitricLike: "broadcast";
  socket: string;
  /** The broadcast's id, in every log line of its pages. */
  broadcast: string;
  /** The page's number, from 1. */
  page: number;
  /** The frame, base64. */
  data: string;
  binary: boolean;
  ids: string[];
  /** A continuation (ids empty): read the socket's ids on from this key and hand them over. */
  start?: Item;
  /** A continuation's except list. */
  except?: string[];
  /** A room broadcast's room: a continuation reads its members on, a page prunes a 410's membership. */
  room?: string;
}

/** True when the event is a page of a broadcast. */
export function isBroadcastEvent(event: unknown): event is BroadcastEvent {
  const e = event as Partial<BroadcastEvent> | null;
  return (
    e?.nitricLike === "broadcast" &&
    typeof e.socket === "string" &&
    typeof e.broadcast === "string" &&
    typeof e.data === "string" &&
    Array.isArray(e.ids)
  );
}

/** What posting a page did. */
export interface PageOutcome {
  delivered: number;
  gone: number;
  /** Not posted: a failure other than throttling, or throttled until the deadline. */
  failed: number;
  /** 429s answered (each retried). */
  throttled: number;
  /** The first failure, for the log. */
  firstError?: string;
}

/** Options of postPage. */
export interface PageOptions {
  /** A client that does not retry by itself: this function retries throttled posts. */
  management: ManagementApi;
  /** Called once for each connection the Management API says is gone (410). */
  prune: (id: string) => Promise<void>;
  /** When to stop retrying throttled posts (ms since the epoch). */
  deadline: number;
  startConcurrency?: number;
  maxConcurrency?: number;
}

function errorName(error: unknown): { name: string; status: number | undefined; message: string } {
  const e = error as { name?: string; statusCode?: number; message?: string };
  return { name: e.name ?? "Error", status: e.statusCode, message: e.message ?? String(error) };
}

const THROTTLED = new Set(["LimitExceededException", "ThrottlingException", "TooManyRequestsException"]);

/** Posts one frame to each id, adapting the calls in flight to API Gateway's throttle. */
export async function postPage(ids: readonly string[], data: Uint8Array, options: PageOptions): Promise<PageOutcome> {
  const out: PageOutcome = { delivered: 0, gone: 0, failed: 0, throttled: 0 };
  const max = options.maxConcurrency ?? MAX_CONCURRENCY;
  let limit = Math.min(max, options.startConcurrency ?? START_CONCURRENCY);
  let lastCut = 0;
  // Slow start: one more call in flight per success (doubling per round trip) until the first 429.
  let slowStart = true;
  const queue: { id: string; attempt: number }[] = ids.map((id) => ({ id, attempt: 0 }));
  let inFlight = 0;
  let waiting = 0;
  return new Promise((resolve) => {
    const done = () => inFlight === 0 && waiting === 0 && queue.length === 0;
    const pump = () => {
      while (inFlight < Math.floor(limit) && queue.length > 0) {
        const next = queue.shift() as { id: string; attempt: number };
        inFlight++;
        void attempt(next).finally(() => {
          inFlight--;
          pump();
          if (done()) resolve(out);
        });
      }
    };
    const attempt = async (next: { id: string; attempt: number }) => {
      const started = Date.now();
      try {
        await options.management.postToConnection(next.id, data);
        out.delivered++;
        // Then one more per round trip's worth of successes.
        limit = Math.min(max, limit + (slowStart ? 1 : 1 / limit));
      } catch (error) {
        const e = errorName(error);
        if (e.name === "GoneException" || e.status === 410) {
          out.gone++;
          await options.prune(next.id).catch(() => {});
          return;
        }
        if (THROTTLED.has(e.name) || e.status === 429) {
          out.throttled++;
          slowStart = false;
          // Halve at most once per round trip: the 429s of one burst are one signal.
          if (started >= lastCut) {
            limit = Math.max(1, limit / 2);
            lastCut = Date.now();
          }
          const wait = Math.random() * Math.min(1000, 20 * 2 ** next.attempt);
          if (Date.now() + wait >= options.deadline) {
            out.failed++;
            out.firstError ??= `${e.name}: throttled until the invocation's deadline`;
            return;
          }
          waiting++;
          setTimeout(() => {
            waiting--;
            queue.push({ id: next.id, attempt: next.attempt + 1 });
            pump();
            if (done()) resolve(out);
          }, wait);
          return;
        }
        out.failed++;
        out.firstError ??= `${e.name}${e.status ? ` (${e.status})` : ""}: ${e.message}`;
      }
    };
    if (done()) resolve(out);
    else pump();
  });
}
