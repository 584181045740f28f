/**
 * `--provider NAME`: `local` is built in; any other name is the installed package of that name,
 * whose default export (or export `provider`) implements the Provider interface of @nitric-like/spec.
 */
import type { Provider } from "@nitric-like/spec";
import { UserError } from "./log.js";

/** The providers that ship with the CLI. */
export const BUILT_IN_PROVIDERS = ["local"] as const;

/** Loads a provider by name. */
export async function loadProvider(name: string): Promise<Provider> {
  if (name === "local") {
    const { provider } = await import("@nitric-like/provider-local");
    return provider;
  }
  let mod: { default?: Provider; provider?: Provider };
  try {
    mod = (await import(name)) as typeof mod;
  } catch (error) {
    throw new UserError(
      `provider "${name}" is not installed (${(error as Error).message.split("\n")[0]}); built-in providers: ${BUILT_IN_PROVIDERS.join(", ")}, or install a provider package and pass its name`,
    );
  }
  const provider = mod.provider ?? mod.default;
  if (!provider || typeof provider.name !== "string") {
    throw new UserError(
      `package "${name}" is not a nitric-like provider: it must export "provider" (or a default export) implementing Provider from @nitric-like/spec`,
    );
  }
  return provider;
}
