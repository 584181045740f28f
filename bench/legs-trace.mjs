// Preloaded (`node --import`) by bench/legs.mjs into every thread of the server it measures: `run`'s
// main thread, its service thread (through NITRIC_LIKE_SERVICE_NODE_ARGS) and the raw `ws` server.
// It stamps, with the monotonic clock every process on the machine shares, each moment a message
// crosses a thread's edge:
//   data   a socket of this thread has bytes to read (a client's frame reaching the gateway)
//   write  this thread writes to a socket (the echo leaving for the client)
//   post   this thread posts on a MessagePort (an event to the service, a send back to the gateway)
//   recv   a MessagePort listener of this thread gets a message
// by wrapping Node's own prototypes in this benchmark's processes only; nothing of nitric-like is
// changed. Each thread keeps its last 65,536 stamps in a ring (no allocation per stamp) and writes
// them to LEGS_DIR when the process gets SIGUSR2: the main thread tells the other threads over a
// BroadcastChannel. The clock is read as a Number of nanoseconds (exact to a few ns for the
// months-long uptimes a double holds).
import { writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { BroadcastChannel, isMainThread, MessagePort, threadId } from "node:worker_threads";

const SIZE = 65536;
const times = new Float64Array(SIZE);
const tags = new Uint8Array(SIZE);
let next = 0;
const NAMES = ["data", "write", "post", "recv"];
const stamp = (tag) => {
  const i = next++ & (SIZE - 1);
  times[i] = Number(process.hrtime.bigint());
  tags[i] = tag;
};

const post = MessagePort.prototype.postMessage;
MessagePort.prototype.postMessage = function (...args) {
  stamp(2);
  return post.apply(this, args);
};
const on = MessagePort.prototype.on;
MessagePort.prototype.on = function (event, listener) {
  if (event !== "message") return on.call(this, event, listener);
  return on.call(this, event, function (...args) {
    stamp(3);
    return listener.apply(this, args);
  });
};
const emit = net.Socket.prototype.emit;
net.Socket.prototype.emit = function (event, ...args) {
  if (event === "data") stamp(0);
  return emit.call(this, event, ...args);
};
// Every socket write ends in one of these two (ws corks, then writes: _writev).
for (const method of ["_write", "_writev"]) {
  const original = net.Socket.prototype[method];
  net.Socket.prototype[method] = function (...args) {
    stamp(1);
    return original.apply(this, args);
  };
}

function dump() {
  const first = Math.max(0, next - SIZE);
  let text = "";
  for (let n = first; n < next; n++) {
    const i = n & (SIZE - 1);
    text += `${NAMES[tags[i]]} ${times[i]}\n`;
  }
  writeFileSync(join(process.env.LEGS_DIR, `${isMainThread ? "main" : `thread${threadId}`}-${process.pid}.txt`), text);
}

const channel = new BroadcastChannel("nitric-like-bench-legs");
channel.unref();
if (isMainThread) {
  process.on("SIGUSR2", () => {
    channel.postMessage("dump");
    dump();
  });
} else {
  channel.onmessage = () => dump();
}
