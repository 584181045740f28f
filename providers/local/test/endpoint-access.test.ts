// Who can reach a service's endpoint: whoever does acts as that service (its kv grants, its
// sockets), so only this user may. The endpoints are Unix sockets in a private folder of the run;
// TCP is served only when asked. Clients of another user are real processes run as "nobody".
import { spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { basename, join } from "node:path";
import { KvStore } from "@nitric-like/contracts/kvstore";
import { Action } from "@nitric-like/contracts/resources";
import { createRunDir, RUN_DIR_PREFIX, runDirParent } from "@nitric-like/provider-kit";
import { Client } from "@nitric-like/rpc";
import { createGrpcTransport } from "@nitric-like/rpc/grpc";
import { afterEach, describe, expect, it } from "vitest";
import { cleanup, declareSocket, declareStore, startProvider } from "./helpers.js";

afterEach(cleanup);

const uid = process.getuid?.();
const isRoot = uid === 0;
if (!isRoot) {
  console.warn(
    "endpoint-access: skipping the tests with a client of another user: they need root to start a process as nobody",
  );
}

/** The uid and gid of "nobody", from /etc/passwd. */
function nobody(): { uid: number; gid: number } {
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith("nobody:"));
  const [, , u, g] = (line ?? "nobody:x:65534:65534").split(":");
  return { uid: Number(u), gid: Number(g) };
}

/**
 * Connects to a Unix socket or a TCP port from a new process, as `user` (or as this user), and
 * resolves with "connected" or the error code.
 */
function connectFrom(target: { path: string } | { port: number }, user?: { uid: number; gid: number }) {
  const script = `
    const s = require("node:net").connect(${JSON.stringify("path" in target ? { path: target.path } : { host: "127.0.0.1", port: target.port })});
    s.on("connect", () => { process.stdout.write("connected"); s.destroy(); });
    s.on("error", (e) => process.stdout.write(e.code || e.message));`;
  return new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, ["-e", script], { cwd: "/", ...(user ?? {}) });
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.stderr.on("data", (d) => {
      out += d;
    });
    child.once("error", reject);
    child.once("exit", () => resolve(out.trim()));
  });
}

/**
 * Opens an HTTP/2 connection to 127.0.0.1:`port` from a new process, as `user` (or as this user),
 * and says whether the server answered its preface ("served") or cut it ("cut").
 */
function http2From(port: number, user?: { uid: number; gid: number }): Promise<string> {
  const script = `
    const s = require("node:net").connect({ host: "127.0.0.1", port: ${port} });
    // The client preface and an empty SETTINGS frame.
    s.on("connect", () => s.write(Buffer.concat([Buffer.from("PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n"), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])])));
    s.on("data", () => { process.stdout.write("served"); s.destroy(); });
    s.on("error", () => {});`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["-e", script], { cwd: "/", ...(user ?? {}) });
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.once("error", reject);
    child.once("exit", () => resolve(out === "served" ? "served" : "cut"));
  });
}

/** The TCP ports this process listens on, from its own file descriptors and the kernel's tables. */
function ownTcpListeners(): Set<number> {
  const inodes = new Set<string>();
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m?.[1]) inodes.add(m[1]);
    } catch {
      // Closed meanwhile.
    }
  }
  const ports = new Set<number>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    if (!existsSync(table)) continue;
    for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // Field 3 is the state (0A: listening), field 9 the socket's inode.
      if (f[3] === "0A" && f[9] !== undefined && inodes.has(f[9])) {
        ports.add(Number.parseInt((f[1] ?? "").split(":")[1] ?? "", 16));
      }
    }
  }
  return ports;
}

describe("who can reach a service's endpoint", () => {
  it.skipIf(!isRoot)("refuses a client of another user on the Unix socket, and serves no TCP by default", async () => {
    const before = ownTcpListeners();
    const { provider } = await startProvider({ tcp: false });
    const local = (await provider.localAddress("svc")) ?? "";
    expect(local).toMatch(/^unix:\//);
    expect(await provider.endpoint("svc")).toBe(local);
    const path = local.slice("unix:".length);

    // The service itself (this user) is served there...
    const svc = new Client(createGrpcTransport(local));
    try {
      await declareStore(svc, "secrets", [Action.KeyValueStoreRead, Action.KeyValueStoreWrite]);
      await svc.unary(KvStore.method.setValue, { ref: { store: "secrets", key: "k" }, content: { pin: 1234 } });
    } finally {
      svc.close();
    }
    expect(await connectFrom({ path })).toBe("connected");
    // ...another user is not, at the folder already.
    expect(await connectFrom({ path }, nobody())).toBe("EACCES");

    // No endpoint listens on TCP: the only new listeners are gateways, and there is none yet.
    expect([...ownTcpListeners()].filter((p) => !before.has(p))).toEqual([]);
    const a = new Client(createGrpcTransport(await provider.endpoint("a")));
    try {
      await declareSocket(a, "chat");
    } finally {
      a.close();
    }
    const gatewayPort = Number(new URL(provider.sockets()[0]?.url ?? "").port);
    expect([...ownTcpListeners()].filter((p) => !before.has(p))).toEqual([gatewayPort]);
  });

  it.skipIf(!isRoot)(
    "serves TCP only when asked, and there only this user's processes: another user's is cut, and said once",
    async () => {
      const { provider, logs } = await startProvider({ tcp: true });
      const address = await provider.endpoint("svc");
      expect(address).toMatch(/^127\.0\.0\.1:\d+$/);
      const port = Number(address.split(":")[1]);
      // TCP has no owner, so another user's process connects; the kernel's table says whose it is,
      // and the endpoint cuts it before reading a call.
      expect(await connectFrom({ port }, nobody())).toBe("connected");
      expect(await http2From(port, nobody())).toBe("cut");
      expect(await http2From(port, nobody())).toBe("cut");
      expect(await http2From(port)).toBe("served");
      const svc = new Client(createGrpcTransport(address));
      try {
        await declareStore(svc, "secrets", [Action.KeyValueStoreRead]);
      } finally {
        svc.close();
      }
      expect(logs.warn).toEqual([
        `service "svc": cut a connection to its endpoint on ${address} from another user (uid ${nobody().uid}); only processes of your user (uid ${uid}) may act as your services (later ones are cut without a word)`,
      ]);
      // The Unix socket stays this user's only.
      const path = ((await provider.localAddress("svc")) ?? "").slice("unix:".length);
      expect(await connectFrom({ path }, nobody())).toBe("EACCES");
    },
  );

  it("keeps the sockets in a private folder of this run (0700, this user's, a fresh random name), removed on stop", async () => {
    const one = await startProvider({ tcp: false });
    const two = await startProvider({ tcp: false });
    await one.provider.endpoint("svc");
    await two.provider.endpoint("svc");
    const dirs = [one.provider.socketDir ?? "", two.provider.socketDir ?? ""];
    expect(dirs[0]).not.toBe(dirs[1]);
    for (const dir of dirs) {
      expect(basename(dir)).toMatch(new RegExp(`^${RUN_DIR_PREFIX}${uid}-[A-Za-z0-9]{6}$`));
      expect(join(dir, "..")).toBe(runDirParent());
      const st = lstatSync(dir);
      expect(st.isDirectory()).toBe(true);
      expect(st.uid).toBe(uid);
      expect(st.mode & 0o777).toBe(0o700);
    }
    const socket = ((await one.provider.localAddress("svc")) ?? "").slice("unix:".length);
    expect(join(socket, "..")).toBe(dirs[0]);
    expect(lstatSync(socket).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dirs[0] ?? "", "owner"), "utf8")).toMatch(new RegExp(`^${process.pid}( \\d+)?$`));
    await one.provider.stop();
    expect(existsSync(dirs[0] ?? "")).toBe(false);
    expect(existsSync(dirs[1] ?? "")).toBe(true);
  });

  it("removes the socket folders of this user's dead runs at start, and nothing else", async () => {
    const parent = runDirParent();
    const made: string[] = [];
    const runDir = (owner: string | undefined, before?: (dir: string) => void) => {
      const dir = mkdtempSync(join(parent, `${RUN_DIR_PREFIX}${uid}-`));
      made.push(dir);
      // Before the owner file: a run started meanwhile by another test file may rightly remove a
      // private folder of ours that names a dead pid.
      before?.(dir);
      if (owner !== undefined) writeFileSync(join(dir, "owner"), owner);
      writeFileSync(join(dir, "1.sock"), "");
      return dir;
    };
    // A pid that was alive a moment ago and is not now: a run killed with SIGKILL.
    const deadPid = spawnSync(process.execPath, ["-e", ""]).pid;
    const dead = runDir(String(deadPid));
    // This process's pid with another start time: the pid of a dead run, reused.
    const reused = runDir(`${process.pid} 1`);
    const live = runDir(String(process.pid));
    // Not a private folder: left alone, whoever made it.
    const open = runDir(String(deadPid), (dir) => chmodSync(dir, 0o755));
    // A link with a run folder's name, to a folder of a dead run: neither the link nor its target goes.
    const target = mkdtempSync(join(parent, "nitric-like-link-target-"));
    made.push(target);
    writeFileSync(join(target, "owner"), String(deadPid));
    writeFileSync(join(target, "1.sock"), "");
    const link = join(parent, `${RUN_DIR_PREFIX}${uid}-lnk${String(Date.now()).slice(-3)}`);
    symlinkSync(target, link);
    made.push(link);
    // Another user's run folder.
    let others: string | undefined;
    if (isRoot) {
      others = runDir(String(deadPid), (dir) => chownSync(dir, nobody().uid, nobody().gid));
    }

    try {
      await startProvider({ tcp: false });
      expect(existsSync(dead)).toBe(false);
      expect(existsSync(reused)).toBe(false);
      expect(existsSync(live)).toBe(true);
      expect(existsSync(open)).toBe(true);
      expect(lstatSync(link).isSymbolicLink()).toBe(true);
      expect(existsSync(join(target, "1.sock"))).toBe(true);
      if (others) expect(existsSync(others)).toBe(true);
    } finally {
      for (const p of made) rmSync(p, { recursive: true, force: true });
    }
  });

  it("refuses to make its folder where another user could swap it (writable by all, not sticky)", async () => {
    const parent = mkdtempSync(join(runDirParent(), "nitric-like-open-parent-"));
    try {
      chmodSync(parent, 0o777);
      expect(() => createRunDir(parent)).toThrow(
        `local provider: ${JSON.stringify(parent)} is writable by every user and not sticky, so a private folder there could be swapped; set TMPDIR to a folder of your own`,
      );
      expect(readdirSync(parent)).toEqual([]);
      chmodSync(parent, 0o1777);
      const dir = createRunDir(parent);
      expect(lstatSync(dir.path).mode & 0o777).toBe(0o700);
      dir.remove();
      expect(existsSync(dir.path)).toBe(false);
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
  });
});
