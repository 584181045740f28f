/**
 * `nitric-like build --provider aws`: one bundle and zip per service, and the CloudFormation
 * template, under the output folder (default `.nitric-like/aws`). The zips' S3 keys carry a hash
 * of their content, so a deploy uploads only what changed and Lambda updates only those functions.
 */

import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { type StagedOutDir, stageOutDir } from "@nitric-like/provider-kit/build";
import { type BuildOptions, type BuildResult, type SocketDomain, socketDomainOf } from "@nitric-like/spec";
import type { BesideFile } from "./beside.js";
import { type BundledWorker, bundleFunction, type ServiceBundle } from "./bundle.js";
import { FUNCTION_FILES } from "./function-file.js";
import { awsHandlerTimeoutMs, awsLimitNotes } from "./limits.js";
import { nativePackageWarning } from "./native.js";
import { buildTemplate } from "./template.js";
import { variableNameProblems } from "./variables.js";
import { zip } from "./zip.js";

/** A built app: the template and each function's zip with its S3 key. */
export interface AwsBuild extends BuildResult {
  template: Record<string, unknown>;
  templateFile: string;
  /** `file`: the zip; `bundle` and `map`: the files it holds, the bundle and its source map. */
  artifacts: {
    service: string;
    key: string;
    file: string;
    bundle: string;
    map: string;
    /** The files copied beside the bundle (its code reads them from beside itself; beside.ts). */
    beside: string[];
    /** Where each of `beside` was copied from (the project's or a package's file). */
    sources: string[];
    /** The folders `beside` holds every data file of (a read named the folder): a file added there is copied by the next build. */
    sourceFolders: string[];
    /** The project's data files its code names that do not exist yet: one made is copied by the next build (BesideFiles.awaited). */
    awaited: string[];
    /** The worker scripts' bundles and their maps in the function's folder (workers.ts). */
    workers: string[];
    /** The project's own files those were made of: a save of one bundles the function again. */
    workerSources: string[];
    bytes: number;
    zipBytes: number;
  }[];
  /** The custom domain of each socket that has one in this build. */
  domains: Record<string, SocketDomain>;
}

function kb(bytes: number): string {
  return `${(bytes / 1024).toFixed(0)} KB`;
}

function mb(bytes: number): string {
  // A small file is not "0 KB".
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return kb(bytes);
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/**
 * What Lambda takes of a function's code unzipped: 250 MB ("Lambda quotas"), 262,144,000 bytes.
 * The zip goes to Lambda through S3 (the artifact bucket), so the 50 MB of a direct upload does
 * not apply.
 */
export const MAX_FUNCTION_UNZIPPED_BYTES = 250 * 1024 * 1024;

/**
 * Refuses a function whose files unzipped take more than Lambda takes, before anything is
 * zipped or deployed (Lambda would refuse it mid-deploy, and CloudFormation roll the stack back):
 * naming what it holds, what its bundle is made of, largest first, and the fixes.
 */
function refuseOversizeFunction(
  service: string,
  files: { name: string; bytes: number }[],
  parts: { name: string; bytes: number }[],
  beside: BesideFile[],
  workers: BundledWorker[] = [],
): void {
  const total = files.reduce((n, f) => n + f.bytes, 0);
  if (total <= MAX_FUNCTION_UNZIPPED_BYTES) return;
  const largest = [
    ...parts.map((p) => ({ what: `${p.name} (bundled)`, bytes: p.bytes })),
    ...beside.map((f) => ({
      what: `${f.name} (copied: ${f.pkg === undefined ? f.readBy : `package "${f.pkg}"`} reads it from beside itself)`,
      bytes: f.bytes,
    })),
    ...workers.map((w) => ({
      what: `${w.name} (bundled: ${w.startedBy} starts ${w.script} as a worker)`,
      bytes: w.bytes,
    })),
  ]
    .sort((a, b) => b.bytes - a.bytes)
    .slice(0, 5)
    .map((p) => `${p.what} ${mb(p.bytes)}`);
  throw Object.assign(
    new Error(
      `service "${service}": its function would be ${mb(total)} unzipped (${files
        .slice(0, 3)
        .map((f) => `${f.name} ${mb(f.bytes)}`)
        .join(
          ", ",
        )}${files.length > 3 ? ", ..." : ""}), over Lambda's ${mb(MAX_FUNCTION_UNZIPPED_BYTES)} for a function's code, which it would refuse mid-deploy; the largest parts: ${largest.join(", ")}; drop or replace the largest packages, keep large data out of the function (a kv store, or fetched at run time), or split the service so each function carries less; nothing was deployed`,
    ),
    { userFacing: true },
  );
}

/**
 * Builds the app into `options.outDir`, replacing what an earlier build wrote there (and only
 * that: a folder holding anything else and no build marker is refused, see stageOutDir). A build
 * refused midway (a function over 250 MB, one that does not bundle, an environment over 4 KB)
 * leaves the folder as the earlier build left it: everything is written in a staging folder first.
 * `domains`: give the sockets their custom domains (a build to deploy; the emulator serves each
 * socket on a port of this machine instead).
 */
export async function buildAws(
  options: BuildOptions,
  { domains = false }: { domains?: boolean } = {},
): Promise<AwsBuild> {
  // Lambda refuses these only at deploy time: before anything is bundled, every problem at once.
  const problems = variableNameProblems(options.variables ?? {});
  if (problems.length > 0)
    throw Object.assign(
      new Error(
        `${problems.join("\n")}\n${problems.length} variable${problems.length === 1 ? "" : "s"} of --env-from cannot go into a function's environment; nothing was built`,
      ),
      { userFacing: true },
    );
  const out = stageOutDir(options.outDir, "aws");
  let built: AwsBuild;
  try {
    built = await buildInto(out, options, domains);
  } catch (error) {
    out.abandon();
    throw error;
  }
  out.commit();
  // A function's bundle in the other format (index.mjs for index.cjs, or the reverse), which a
  // restart under run --provider aws may have written since the last build (bundleFunction, into
  // the build folder itself): the emulator, as Lambda, would load index.mjs first.
  for (const a of built.artifacts) {
    const other = join(
      dirname(a.bundle),
      basename(a.bundle) === FUNCTION_FILES.cjs ? FUNCTION_FILES.esm : FUNCTION_FILES.cjs,
    );
    rmSync(other, { force: true });
    rmSync(`${other}.map`, { force: true });
  }
  options.logger.info(
    `wrote ${built.templateFile} (${Object.keys(built.template.Resources as object).length} resources)`,
  );
  return built;
}

/** Writes the build into `out`'s staging folder; what it returns names the files where `commit` puts them. */
async function buildInto(out: StagedOutDir, options: BuildOptions, domains: boolean): Promise<AwsBuild> {
  const { logger, spec } = options;
  const outDir = out.staging;
  const artifacts: AwsBuild["artifacts"] = [];
  let n = 0;
  for (const service of options.services) {
    n++;
    logger.info(`bundling service "${service.name}" (${n}/${options.services.length})`);
    const bundle = await bundleFunction(options.project.dir, service, outDir);
    for (const warning of bundle.warnings) logger.warn(`service "${service.name}": esbuild: ${warning}`);
    for (const problem of bundle.beside.problems) logger.warn(`service "${service.name}": ${problem}`);
    const code = readFileSync(bundle.file);
    const mapData = readFileSync(bundle.map);
    const name = basename(bundle.file);
    const beside = bundle.beside.copy;
    refuseOversizeFunction(
      service.name,
      [
        { name, bytes: code.length },
        { name: basename(bundle.map), bytes: mapData.length },
        ...beside.map((f) => ({ name: f.name, bytes: f.bytes })),
        ...bundle.workers.flatMap((w) => [
          { name: w.name, bytes: w.bytes },
          { name: basename(w.map), bytes: w.mapBytes },
        ]),
      ],
      bundle.parts,
      beside,
      bundle.workers,
    );
    const dir = dirname(bundle.file);
    for (const f of copyBeside(bundle)) {
      logger.info(
        `  ${service.name}: ${f.name} ${f.bytes < 1024 ? `${f.bytes} bytes` : kb(f.bytes)} copied into the function: ${f.pkg === undefined ? f.readBy : `package "${f.pkg}"`} reads it from beside itself`,
      );
    }
    for (const w of bundle.workers) {
      logger.info(
        `  ${service.name}: ${w.name} ${w.bytes < 1024 ? `${w.bytes} bytes` : kb(w.bytes)} bundled into the function: ${w.startedBy} starts ${w.script} as a worker (new URL(${JSON.stringify(w.literal)}, import.meta.url))`,
      );
    }
    const archive = zip([
      { name, data: code },
      { name: basename(bundle.map), data: mapData },
      ...beside.map((f) => ({ name: f.name, data: readFileSync(f.from) })),
      ...bundle.workers.flatMap((w) => [
        { name: w.name, data: readFileSync(w.file) },
        { name: basename(w.map), data: readFileSync(w.map) },
      ]),
    ]);
    const hash = artifactHash(
      code,
      bundle.sourcesDigest +
        beside.map((f) => `${f.name}\0${f.digest}\0`).join("") +
        bundle.workers.map((w) => `${w.name}\0${w.digest}\0`).join(""),
    );
    const file = join(outDir, "functions", `${service.name}.zip`);
    writeFileSync(file, archive);
    const key = `nitric-like/${spec.name}/${service.name}-${hash}.zip`;
    artifacts.push({
      service: service.name,
      key,
      file: out.final(file),
      bundle: out.final(bundle.file),
      map: out.final(bundle.map),
      beside: beside.map((f) => out.final(join(dir, ...f.name.split("/")))),
      sources: beside.map((f) => f.from),
      sourceFolders: besideFolders(beside),
      awaited: bundle.beside.awaited,
      workers: bundle.workers.flatMap((w) => [out.final(w.file), out.final(w.map)]),
      workerSources: [...new Set(bundle.workers.flatMap((w) => w.ownSources))],
      bytes: code.length,
      zipBytes: archive.length,
    });
    const esm = name === FUNCTION_FILES.esm ? " (an ES module: the service awaits at its top level)" : "";
    const memory = service.memory === undefined ? "" : `, memory ${service.memory} MB`;
    logger.info(`  ${service.name}: ${name} ${kb(code.length)}${esm}, zip ${kb(archive.length)}${memory}`);
    for (const pkg of bundle.native) logger.warn(nativePackageWarning(service.name, pkg));
  }
  rmSync(join(outDir, "entries"), { recursive: true, force: true });
  for (const note of awsLimitNotes(options.project, options.environment)) logger.warn(note);
  const handlerTimeoutMs = awsHandlerTimeoutMs(options.project, options.environment);
  const socketDomains = domains ? domainsOf(options) : {};
  for (const [socket, domain] of Object.entries(socketDomains)) {
    const dns =
      domain.hostedZone === undefined
        ? "point its DNS at the DomainTarget output once deployed"
        : `its alias record in hosted zone ${domain.hostedZone}`;
    logger.info(`websocket ${socket}: wss://${domain.name} (${dns})`);
  }
  const memoryByService = options.services.flatMap((s) => (s.memory === undefined ? [] : [[s.name, s.memory]]));
  const template = buildTemplate({
    spec,
    artifactKeys: Object.fromEntries(artifacts.map((a) => [a.service, a.key])),
    ...(memoryByService.length > 0 ? { serviceMemoryMb: Object.fromEntries(memoryByService) } : {}),
    ...(handlerTimeoutMs === undefined ? {} : { handlerTimeoutMs }),
    ...(options.variables === undefined ? {} : { variables: options.variables }),
    ...(Object.keys(socketDomains).length > 0 ? { domains: socketDomains } : {}),
  });
  const templateFile = join(outDir, "template.json");
  writeFileSync(templateFile, `${JSON.stringify(template, null, 2)}\n`);
  writeFileSync(
    join(outDir, "artifacts.json"),
    `${JSON.stringify(
      artifacts.map(({ service, key }) => ({ service, key, file: `functions/${service}.zip` })),
      null,
      2,
    )}\n`,
  );
  return {
    files: [out.final(templateFile), ...artifacts.flatMap((a) => [a.file, a.bundle, a.map, ...a.beside, ...a.workers])],
    template,
    templateFile: out.final(templateFile),
    artifacts,
    domains: socketDomains,
  };
}

/** Copies the files `bundle`'s code reads from beside itself into its function's folder; returns them. */
export function copyBeside(bundle: ServiceBundle): BesideFile[] {
  const dir = dirname(bundle.file);
  for (const f of bundle.beside.copy) {
    const to = join(dir, ...f.name.split("/"));
    mkdirSync(dirname(to), { recursive: true });
    copyFileSync(f.from, to);
  }
  return bundle.beside.copy;
}

/** The folders `beside` copies whole (BesideFile.folder), each once. */
export function besideFolders(beside: readonly BesideFile[]): string[] {
  return [...new Set(beside.flatMap((f) => (f.folder === undefined ? [] : [f.folder])))];
}

/** The custom domain of each declared socket that has one, for the environment built. */
function domainsOf(options: BuildOptions): Record<string, SocketDomain> {
  const out: Record<string, SocketDomain> = Object.create(null);
  for (const r of options.spec.resources) {
    if (r.kind !== "websocket") continue;
    const domain = socketDomainOf(options.project, r.name, options.environment);
    if (domain) out[r.name] = domain;
  }
  return out;
}

/**
 * The content hash in a function's artifact key, which decides whether `up` uploads it again. It
 * leaves out `"use strict"` directives: esbuild 0.28 writes or omits one at the top of a module
 * wrapper from one build of the same inputs to the next (esbuild#3284; 1 build in 6 of
 * examples/chat here), and an unchanged function must not be uploaded and updated again for it.
 */
export function artifactHash(code: Buffer | string, inputs = ""): string {
  const text = typeof code === "string" ? code : code.toString("utf8");
  return createHash("sha256").update(text.replaceAll('"use strict";', "")).update(inputs).digest("hex").slice(0, 16);
}
