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
// The bundle is kept ASCII (see provider-kit's ascii-comments.ts): V8 holds its source on `run`'s
// heap one byte a character only while every character is Latin-1. The build fails if a
// non-ASCII character is left outside a comment.
import { statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { asciiComments, firstNonAscii } from "@nitric-like/provider-kit/ascii-comments";
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
  // Written below, once the bundle's comments are ASCII.
  write: false,
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
for (const file of result.outputFiles) {
  if (file.path !== outfile) {
    writeFileSync(file.path, file.contents); // the source map
    continue;
  }
  const code = asciiComments(file.text);
  const left = firstNonAscii(code);
  if (left) {
    throw new Error(
      `${outfile}:${left.line}:${left.column}: a non-ASCII character outside a comment, which esbuild's charset "ascii" should have escaped`,
    );
  }
  writeFileSync(outfile, code);
}

const inputs = Object.keys(result.metafile.inputs)
  .filter((f) => !f.startsWith("lmdb-with-provider:"))
  .map((f) => {
    const path = resolve(cli, f);
    const s = statSync(path);
    return [path, s.mtimeMs, s.size];
  });
writeFileSync(join(cli, "dist", "nitric-like.inputs.json"), JSON.stringify(inputs));
