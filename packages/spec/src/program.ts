/**
 * The program a shell command line runs, by its file name alone (`aws-vault` for
 * `FOO=1 /usr/local/bin/aws-vault export --token abc`), or undefined: what errors name, since
 * the rest of the line (its arguments, an assignment before it) may hold a token, and errors
 * reach terminals and CI logs. Both the collect pass (a child process a module starts as it
 * loads) and the AWS deploy commands (a profile's credential_process) name programs this way.
 */
export function programOf(command: string): string | undefined {
  let at = 0;
  const word = (): string => {
    while (at < command.length && /\s/.test(command[at] as string)) at += 1;
    let text = "";
    while (at < command.length && !/[\s;&|<>()]/.test(command[at] as string)) {
      const c = command[at] as string;
      at += 1;
      if (c === '"' || c === "'") {
        const close = command.indexOf(c, at);
        const end = close === -1 ? command.length : close;
        text += command.slice(at, end);
        at = end + 1;
      } else if (c === "\\" && process.platform !== "win32") {
        text += command[at] ?? "";
        at += 1;
      } else text += c;
    }
    return text;
  };
  let first = word();
  // `NAME=value program ...`: the assignments' values are not named.
  while (/^[A-Za-z_][A-Za-z0-9_]*=/.test(first)) first = word();
  const name = first.split(/[\\/]/).pop() ?? "";
  return name === "" ? undefined : name.slice(0, 60);
}
