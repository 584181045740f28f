/**
 * Resolves the CloudFormation intrinsic functions our templates use (Ref, Fn::GetAtt, Fn::Sub,
 * Fn::Join, Fn::Split, Fn::Select) against made-up physical ids, the way CloudFormation would after creating the stack.
 * The emulator runs the template itself, so a wrong reference in it fails here as it would on AWS.
 */

/** What `Ref` and `Fn::GetAtt` resolve to. */
export interface Physical {
  ref: Record<string, string>;
  attributes: Record<string, Record<string, string>>;
}

/** Resolves every intrinsic in `value`. Throws on a reference to nothing. */
export function resolveIntrinsics(value: unknown, physical: Physical): unknown {
  if (Array.isArray(value)) return value.map((v) => resolveIntrinsics(v, physical));
  if (value === null || typeof value !== "object") return value;
  const entries = Object.entries(value);
  if (entries.length === 1) {
    const [fn, arg] = entries[0] as [string, unknown];
    if (fn === "Ref") return ref(String(arg), physical);
    if (fn === "Fn::GetAtt") {
      const [id, attribute] = Array.isArray(arg) ? (arg as string[]) : String(arg).split(/\.(.*)/s);
      return getAtt(String(id), String(attribute), physical);
    }
    if (fn === "Fn::Sub") {
      const [text, vars] = Array.isArray(arg) ? (arg as [string, Record<string, unknown>]) : [String(arg), {}];
      const locals = Object.fromEntries(
        Object.entries(vars ?? {}).map(([k, v]) => [k, String(resolveIntrinsics(v, physical))]),
      );
      return text.replace(/\$\{([^}]+)\}/g, (whole, name: string) => {
        if (name.startsWith("!")) return whole.replace("${!", "${");
        if (name in locals) return locals[name] as string;
        const dot = name.indexOf(".");
        return dot < 0 ? ref(name, physical) : getAtt(name.slice(0, dot), name.slice(dot + 1), physical);
      });
    }
    if (fn === "Fn::Split") {
      const [separator, text] = arg as [string, unknown];
      return String(resolveIntrinsics(text, physical)).split(separator);
    }
    if (fn === "Fn::Select") {
      const [index, list] = arg as [string | number, unknown];
      const items = resolveIntrinsics(list, physical);
      const item = Array.isArray(items) ? items[Number(index)] : undefined;
      if (item === undefined) throw new Error(`template: Fn::Select ${String(index)} of a list without it`);
      return item;
    }
    if (fn === "Fn::Join") {
      const [separator, parts] = arg as [string, unknown[]];
      return parts.map((p) => String(resolveIntrinsics(p, physical))).join(separator);
    }
  }
  return Object.fromEntries(entries.map(([k, v]) => [k, resolveIntrinsics(v, physical)]));
}

function ref(name: string, physical: Physical): string {
  const value = physical.ref[name];
  if (value === undefined) throw new Error(`template: Ref to "${name}", which is neither a resource nor a parameter`);
  return value;
}

function getAtt(id: string, attribute: string, physical: Physical): string {
  const value = physical.attributes[id]?.[attribute];
  if (value === undefined) throw new Error(`template: Fn::GetAtt ${id}.${attribute} names nothing the template has`);
  return value;
}
