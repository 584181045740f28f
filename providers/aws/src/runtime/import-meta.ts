/**
 * What `import.meta.url` is in a function bundled as CommonJS (build/bundle.ts injects this and
 * points `import.meta.url` at it): the bundle's own URL, as Node gives an ES module its own.
 * Only ever bundled into a CommonJS function, where `__filename` is the bundle's path.
 */
import { pathToFileURL } from "node:url";

export const __nlImportMetaUrl = pathToFileURL(__filename).href;
