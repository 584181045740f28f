/**
 * Watches the files services are built from (the bundle inputs, outside node_modules) and reports
 * changed paths, debounced so an editor's save burst restarts a service once.
 */
import { type FSWatcher, watch } from "node:fs";
import { dirname, join } from "node:path";

/** A running watcher. */
export interface Watcher {
  /** Watches these files too (their folders). */
  add(files: Iterable<string>): void;
  /** Watches these folders too (a new one a service's glob may take files from). */
  addFolders(dirs: Iterable<string>): void;
  close(): void;
}

/** Starts watching; `onChange` receives the absolute paths that changed. */
export function watchFiles(files: Iterable<string>, onChange: (paths: Set<string>) => void, debounceMs = 120): Watcher {
  const watchers = new Map<string, FSWatcher>();
  let pending = new Set<string>();
  let timer: NodeJS.Timeout | undefined;
  const add = (list: Iterable<string>) => addFolders([...list].map((file) => dirname(file)));
  const addFolders = (list: Iterable<string>) => {
    for (const dir of list) {
      if (dir.includes("/node_modules/") || dir.endsWith("/node_modules")) continue;
      if (watchers.has(dir)) continue;
      try {
        const w = watch(dir, (_event, name) => {
          if (!name) return;
          pending.add(join(dir, name.toString()));
          clearTimeout(timer);
          timer = setTimeout(() => {
            const batch = pending;
            pending = new Set();
            onChange(batch);
          }, debounceMs);
        });
        w.on("error", () => {});
        watchers.set(dir, w);
      } catch {
        // The folder vanished; nothing to watch.
      }
    }
  };
  add(files);
  return {
    add,
    addFolders,
    close() {
      clearTimeout(timer);
      for (const w of watchers.values()) w.close();
      watchers.clear();
    },
  };
}
