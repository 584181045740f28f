#!/usr/bin/env node
// Writes dist/nitric-like.mjs: the CLI and the local provider (with grpc-js, protobuf-es, yaml and
// ws) as one file, which Node loads in a fraction of the time the same code takes as some 260
// separate ES modules (about 0.15 s against 0.5 s for `nitric-like --help` here). Packages with
// native parts (esbuild, lmdb) and the AWS provider (loaded only for --provider aws) stay
// external. Beside it, dist/nitric-like.inputs.json lists every file it was made from with its
// size and mtime: bin/nitric-like.js uses the bundle only while none of them changed, so a
// `tsc -b` without this step never runs stale code. Run by `pnpm build` and `pnpm test`.
//
// lmdb (its native addon and msgpackr; some 40 ms to load here) is loaded when the local provider
// is, not with the CLI: an external import would be hoisted to the top of the one file and load
// at start, so the provider's `import { open } from "lmdb"` gets a module that imports lmdb
// itself (a top-level await, which esbuild keeps inside the provider's lazy initialisation). `run`
// loads the provider while the collect pass runs (bench/startup.mjs).
//
// The bundle is kept ASCII. V8 holds a module's source for as long as the process runs, one byte
// a character only if every character is Latin-1: two em dashes in the comments of a dependency
// made the 1.8 MB bundle a 3.6 MB two-byte string on `run`'s heap (a heap snapshot of `run`).
// esbuild escapes every non-ASCII character of the code itself but copies the comments it keeps
// as they are, so those comments' characters are escaped here, and the build fails if any other
// non-ASCII character is left.
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "acorn";
import { build } from "esbuild";

/** lmdb as the local provider imports it: loaded when the provider module initialises (see above). */
const lmdbWithProvider = {
  name: "lmdb-with-provider",
  setup(build) {
    build.onResolve({ filter: /^lmdb$/ }, (args) =>
      args.namespace === "lmdb-with-provider"
        ? { path: "lmdb", external: true }
        : { path: "lmdb", namespace: "lmdb-with-provider" },
    );
    build.onLoad({ filter: /.*/, namespace: "lmdb-with-provider" }, () => ({
      contents: 'export const { open } = await import("lmdb");\n',
      loader: "js",
    }));
  },
};

const cli = fileURLToPath(new URL("..", import.meta.url));
const outfile = join(cli, "dist", "nitric-like.mjs");
const result = await build({
  entryPoints: [join(cli, "dist", "main.js")],
  outfile,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  metafile: true,
  logLevel: "warning",
  absWorkingDir: cli,
  sourcemap: "linked",
  sourcesContent: false,
  // ws's optional native speed-ups and grpc-js's channelz loader are required only when present.
  external: ["esbuild", "lmdb", "@nitric-like/provider-aws", "bufferutil", "utf-8-validate", "@grpc/proto-loader"],
  plugins: [lmdbWithProvider],
  banner: {
    js: 'import { createRequire as __nitricLikeRequire } from "node:module"; const require = __nitricLikeRequire(import.meta.url);',
  },
});
writeFileSync(outfile, asciiComments(readFileSync(outfile, "utf8")));

/** `code` with the non-ASCII characters of its comments written as \u escapes; throws on any other. */
function asciiComments(code) {
  const comments = [];
  parse(code, {
    ecmaVersion: "latest",
    sourceType: "module",
    onComment: (_block, _text, start, end) => comments.push([start, end]),
  });
  let out = "";
  let at = 0;
  for (const [start, end] of comments) {
    out +=
      code.slice(at, start) +
      code.slice(start, end).replace(/[\u0080-\u{10ffff}]/gu, (c) => `\\u{${c.codePointAt(0).toString(16)}}`);
    at = end;
  }
  out += code.slice(at);
  const left = out.search(/[\u0080-\u{10ffff}]/u);
  if (left !== -1) {
    const line = out.slice(0, left).split("\n").length;
    throw new Error(
      `${outfile}:${line}: a non-ASCII character outside a comment; esbuild's charset "ascii" should have escaped it`,
    );
  }
  return out;
}

const inputs = Object.keys(result.metafile.inputs)
  .filter((f) => !f.startsWith("lmdb-with-provider:"))
  .map((f) => {
    const path = resolve(cli, f);
    const s = statSync(path);
    return [path, s.mtimeMs, s.size];
  });
writeFileSync(join(cli, "dist", "nitric-like.inputs.json"), JSON.stringify(inputs));
