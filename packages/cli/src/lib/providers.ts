/**
 * `--provider NAME`: `local` and `aws` are built in; any other name is a package installed in the
 * project (or beside the CLI) whose export `provider` (or default export) implements Provider from
 * @nitric-like/spec. A third party adds a cloud by publishing such a package.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { Provider } from "@nitric-like/spec";
import { UserError } from "./log.js";

/** The providers that ship with the CLI. */
export const BUILT_IN_PROVIDERS = ["local", "aws"] as const;

/** Installed packages that look like providers: `nitric-like-provider-*` and `@scope/nitric-like-provider-*`. */
export function installedProviders(projectDir: string): string[] {
  const found = new Set<string>();
  const modules = join(projectDir, "node_modules");
  if (!existsSync(modules)) return [];
  for (const entry of readdirSync(modules)) {
    if (entry.startsWith("nitric-like-provider-")) found.add(entry);
    if (entry.startsWith("@")) {
      try {
        for (const inner of readdirSync(join(modules, entry)))
          if (inner.startsWith("nitric-like-provider-")) found.add(`${entry}/${inner}`);
      } catch {
        // Not a folder.
      }
    }
  }
  return [...found].sort();
}

function isProvider(value: unknown): value is Provider {
  return typeof value === "object" && value !== null && typeof (value as Provider).name === "string";
}

/**
 * Loads a provider by name, resolving packages from the project in `projectDir`. `passAs` is how
 * the caller is given a provider's name, for the advice when none is installed by that name.
 */
export async function loadProvider(
  name: string,
  projectDir = process.cwd(),
  passAs = "--provider <package>",
): Promise<Provider> {
  if (name === "local") return (await import("@nitric-like/provider-local")).provider;
  if (name === "aws") return (await import("@nitric-like/provider-aws")).provider;
  const known = [...BUILT_IN_PROVIDERS, ...installedProviders(projectDir)].join(", ");
  let url: string;
  try {
    const anchor = existsSync(join(projectDir, "package.json"))
      ? join(projectDir, "package.json")
      : join(projectDir, "x");
    url = pathToFileURL(createRequire(anchor).resolve(name)).href;
  } catch {
    throw new UserError(
      `provider "${name}" is not installed in ${projectDir}; providers found: ${known}. Pick one of those, or install a third-party provider's package and pass its package name (${passAs})`,
    );
  }
  let mod: { default?: unknown; provider?: unknown };
  try {
    mod = (await import(url)) as typeof mod;
  } catch (error) {
    throw new UserError(`provider "${name}" failed to load: ${(error as Error).message.split("\n")[0]}`);
  }
  const provider = isProvider(mod.provider) ? mod.provider : isProvider(mod.default) ? mod.default : undefined;
  if (!provider) {
    const pkg = (() => {
      try {
        return (
          JSON.parse(readFileSync(join(projectDir, "node_modules", name, "package.json"), "utf8")) as {
            version?: string;
          }
        ).version;
      } catch {
        return undefined;
      }
    })();
    throw new UserError(
      `package "${name}"${pkg ? ` ${pkg}` : ""} is not a nitric-like provider: it must export "provider" (or a default export) implementing Provider from @nitric-like/spec`,
    );
  }
  return provider;
}

/** What each command asks of a provider, as its refusal says it. */
const DOES = {
  run: "run",
  build: "build",
  up: "deploy",
  down: "remove deployments",
  outputs: "describe deployments",
  logs: "read a deployment's logs",
  putSecret: "store secrets",
} as const;

/** Loads a provider and checks that it can do `what`; the error names the providers that can. */
export async function providerFor(
  name: string,
  what: "run" | "build" | "up" | "down" | "outputs" | "logs" | "putSecret",
  projectDir: string,
): Promise<Provider & Required<Pick<Provider, typeof what>>> {
  const provider = await loadProvider(name, projectDir);
  if (typeof provider[what] !== "function") {
    const hint = what === "run" || what === "putSecret" ? "pass --provider local" : "pass --provider aws";
    throw new UserError(`provider "${provider.name}" cannot ${DOES[what]}; ${hint}`);
  }
  return provider as Provider & Required<Pick<Provider, typeof what>>;
}

/**
 * Refuses a stack name the provider cannot deploy as (for aws: not a CloudFormation stack name),
 * with the rule and the fix, before anything is bundled or any cloud is called: the one check of
 * every command that takes --stack (up, down, outputs, logs, connect, secret put), so each says
 * what up says rather than that no such stack exists.
 */
export function refuseStackName(provider: Provider, stack: string, command: string): void {
  const problem = provider.stackNameProblem?.(stack, command);
  if (problem) throw new UserError(problem);
}
