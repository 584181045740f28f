/** `nitric-like new <dir>`: a new project from a template, ready for `nitric-like run`. */
import { relative } from "node:path";
import { type Output, UserError } from "../lib/log.js";
import { scaffold, templates } from "../lib/scaffold.js";

/** Help for `new`. */
export const NEW_HELP = `Usage: nitric-like new <dir> [options]

Creates a project in dir (a new or empty folder) from a template, named after the
folder: nitric-like.yaml, a service under services/, package.json, tsconfig.json,
.gitignore and a README. Then:
  cd <dir> && npm install && npx nitric-like run

Options:
  --template <name>   The template (default: chat). Templates: ${templates().join(", ")}.
  --plain             No colours.
  -h, --help          Show this help.
`;

/** Runs `new`. */
export function newCommand(options: { dir: string | undefined; template: string; version: string }, output: Output) {
  if (options.dir === undefined)
    throw new UserError('new: which folder? such as "nitric-like new my-app"; see "nitric-like new --help"');
  const made = scaffold(options.dir, options.template, options.version);
  output.info(`created ${output.paint("bold", made.name)} from the ${options.template} template:`);
  for (const f of made.files) output.info(`  ${f}`);
  const where = relative(process.cwd(), made.dir) || ".";
  output.info(`\nnext:\n  cd ${where}\n  npm install\n  npx nitric-like run`);
  output.result(made.dir);
  return 0;
}
