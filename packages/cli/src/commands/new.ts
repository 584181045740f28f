/** `nitric-like new <dir>`: a new project from a template, ready for `nitric-like run`. */
import { basename, relative } from "node:path";
import { type Output, UserError } from "../lib/log.js";
import { scaffold, templates } from "../lib/scaffold.js";

/** Help for `new`. */
export const NEW_HELP = `Usage: nitric-like new <dir> [options]

Creates a project in dir (a new or empty folder) from a template, named after the
folder: nitric-like.yaml, a service under services/, its test under test/,
package.json, tsconfig.json, vitest.config.ts, pnpm-workspace.yaml, .gitignore and a
README. The @nitric-like packages this CLI runs with (and the test kit,
@nitric-like/testing) are packed into dir/vendor/ and the project depends on them
there, so it installs where they are not published. Then, with npm or pnpm:
  cd <dir> && npm install && npx nitric-like run
  cd <dir> && pnpm install && pnpm nitric-like run
"npm run check" (or "pnpm check") type-checks the services and the test; "npm test"
(or "pnpm test") runs the test.

Options:
  --template <name>   The template (default: chat). Templates: ${templates().join(", ")}.
  --from-registry     Depend on the published @nitric-like packages (^ this CLI's
                      version) instead of packing them into vendor/.
  --plain             No colours.
  -h, --help          Show this help.
`;

/** `dir` as a shell word: as it is when that is safe, else single-quoted; never read as an option. */
function shellWord(dir: string): string {
  const path = dir.startsWith("-") ? `./${dir}` : dir;
  return /^[\w@%+=:,./-]+$/.test(path) ? path : `'${path.replaceAll("'", "'\\''")}'`;
}

/** Runs `new`. */
export function newCommand(
  options: { dir: string | undefined; template: string; version: string; fromRegistry?: boolean },
  output: Output,
) {
  if (options.dir === undefined)
    throw new UserError('new: which folder? such as "nitric-like new my-app"; see "nitric-like new --help"');
  const made = scaffold(options.dir, options.template, {
    version: options.version,
    fromRegistry: options.fromRegistry === true,
  });
  // A folder whose name is not a project name ("My App", "Café") gives its nearest one: say both.
  const folder = basename(made.dir);
  const where = folder === made.name ? "" : ` in ${JSON.stringify(folder)}`;
  output.info(`created ${output.paint("bold", made.name)}${where} from the ${options.template} template:`);
  for (const f of made.files) output.info(`  ${f}`);
  const cd = `cd ${shellWord(relative(process.cwd(), made.dir) || ".")}`;
  output.info(`\nnext, with npm:\n  ${cd}\n  npm install\n  npx nitric-like run`);
  output.info(`or with pnpm:\n  ${cd}\n  pnpm install\n  pnpm nitric-like run`);
  output.result(made.dir);
  return 0;
}
