#!/usr/bin/env node
import { posix } from "node:path";
/**
 * protoc-gen-fastcodec: a protoc plugin (run by `buf generate`, see proto/buf.gen.yaml) that writes
 * the codecs our contracts run with, from the same descriptors protoc-gen-es reads, so they cannot
 * drift from proto/. protobuf-es generates the types and is the tests' oracle; nothing at run time
 * loads it.
 *
 * What it writes: every message a service sends or receives gets a codec, and every service a
 * description our RPC layer calls and serves it by (`Service`, with each method's codecs), in the
 * service's file; the code of each message those reach is written once, in its own file's output,
 * and imported elsewhere (so buf must give it every file in one request: `strategy: all`).
 *
 * Option:
 *   runtime=<path>     the import path of src/fastcodec/runtime.ts, from the output root
 *
 * What the generated code does, message by message: a size pass (strings measured once, sizes
 * kept in pre-order), a write pass into one buffer, and a reader that fills protobuf-es-shaped
 * objects. Fields are written in field-number order with protobuf-es's presence rules, and unknown
 * fields are kept on read (`$unknown`, raw bytes) and written back after the known ones, as
 * protobuf-es does. What the reader accepts and refuses is described in the runtime. A field type
 * the generator has no code for (64-bit integers, sint32, groups, wrapper and Value/ListValue
 * fields, non-string map keys) is an error here, naming the field.
 */
import { ScalarType } from "@bufbuild/protobuf";
import { createEcmaScriptPlugin, runNodeJs } from "@bufbuild/protoplugin";

const STRUCT = "google.protobuf.Struct";
const WRAPPERS = new Set(
  ["Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes"].map(
    (n) => `google.protobuf.${n}Value`,
  ),
);

/** Per scalar type: wire type, the runtime check, size of a value (after the tag), write, read, zero test. */
const SCALARS = {
  [ScalarType.STRING]: { wire: 2, check: "str", read: "r.string()", zero: (v) => `${v} === ""` },
  [ScalarType.BYTES]: {
    wire: 2,
    check: "bytes",
    size: (v) => `varintSize(${v}.length) + ${v}.length`,
    write: (v) => `w.bytes(${v});`,
    read: "r.bytes()",
    zero: (v) => `${v}.length === 0`,
  },
  [ScalarType.BOOL]: {
    wire: 0,
    check: "bool",
    size: () => "1",
    write: (v) => `w.byte(${v} ? 1 : 0);`,
    read: "r.bool()",
    zero: (v) => `${v} === false`,
  },
  [ScalarType.INT32]: {
    wire: 0,
    check: "int32",
    size: (v) => `int32Size(${v})`,
    write: (v) => `w.int32(${v});`,
    read: "r.int32()",
    zero: (v) => `${v} === 0`,
  },
  [ScalarType.UINT32]: {
    wire: 0,
    check: "uint32",
    size: (v) => `varintSize(${v})`,
    write: (v) => `w.varint(${v});`,
    read: "r.uint32()",
    zero: (v) => `${v} === 0`,
  },
  [ScalarType.DOUBLE]: {
    wire: 1,
    check: "num",
    size: () => "8",
    write: (v) => `w.double(${v});`,
    read: "r.double()",
    // protobuf-es writes -0.
    zero: (v) => `Object.is(${v}, 0)`,
  },
  [ScalarType.FLOAT]: {
    wire: 5,
    check: "num",
    size: () => "4",
    write: (v) => `w.float(${v});`,
    read: "r.float()",
    zero: (v) => `Object.is(${v}, 0)`,
  },
  [ScalarType.FIXED32]: {
    wire: 5,
    check: "uint32",
    size: () => "4",
    write: (v) => `w.fixed32(${v});`,
    read: "r.fixed32()",
    zero: (v) => `${v} === 0`,
  },
  [ScalarType.SFIXED32]: {
    wire: 5,
    check: "int32",
    size: () => "4",
    write: (v) => `w.sfixed32(${v});`,
    read: "r.sfixed32()",
    zero: (v) => `${v} === 0`,
  },
};
const ENUM = SCALARS[ScalarType.INT32];

const varintLen = (v) => (v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5);
const tagOf = (no, wire) => ((no << 3) | wire) >>> 0;
/** The statement that writes a tag: one byte, or a varint. */
const writeTag = (no, wire) => {
  const t = tagOf(no, wire);
  return t < 0x80 ? `w.byte(${t});` : `w.varint(${t});`;
};
/** The runtime's exports the generated code uses (src/fastcodec/runtime.ts). */
const RUNTIME = [
  "EMPTY",
  "RECURSION_LIMIT",
  "Writer",
  "Reader",
  "asBuffer",
  "bool",
  "bytes",
  "decodeError",
  "encodeError",
  "ended",
  "int32",
  "int32Size",
  "msg",
  "num",
  "readStruct",
  "setOwn",
  "sizeStruct",
  "str",
  "tooDeep",
  "uint32",
  "unknownSize",
  "utf8Size",
  "varintSize",
  "writeStruct",
  "wrongWireType",
];
const ident = (desc) => desc.typeName.replace(/\./g, "_");

/** Why a field cannot have direct code, or undefined when it can. */
function unsupported(field) {
  if (field.delimitedEncoding) return "group encoding";
  if (field.presence === 3) return "a required field";
  if (field.enum && !field.enum.open) return "a closed enum";
  const scalarOk = (t) => SCALARS[t] !== undefined;
  const messageOk = (m, inOneof) =>
    m.typeName === STRUCT
      ? inOneof
        ? "a Struct in a oneof"
        : undefined
      : WRAPPERS.has(m.typeName) || m.typeName === "google.protobuf.Value" || m.typeName === "google.protobuf.ListValue"
        ? m.typeName
        : undefined;
  switch (field.fieldKind) {
    case "scalar":
      return scalarOk(field.scalar) ? undefined : `scalar type ${ScalarType[field.scalar]}`;
    case "enum":
      return undefined;
    case "message":
      return messageOk(field.message, field.oneof !== undefined);
    case "list":
      if (field.listKind === "message")
        return field.message.typeName === STRUCT ? "a list of Struct" : messageOk(field.message, false);
      if (field.listKind === "enum") return undefined;
      return scalarOk(field.scalar) ? undefined : `scalar type ${ScalarType[field.scalar]}`;
    case "map":
      if (field.mapKey !== ScalarType.STRING) return `map key ${ScalarType[field.mapKey]}`;
      if (field.mapKind === "message")
        return field.message.typeName === STRUCT ? "a map of Struct" : messageOk(field.message, false);
      if (field.mapKind === "enum") return undefined;
      return scalarOk(field.scalar) ? undefined : `scalar type ${ScalarType[field.scalar]}`;
  }
  return field.fieldKind;
}

/** Every message a root reaches through its fields, Struct excluded (the runtime has it). */
function closure(roots) {
  const seen = new Map();
  const visit = (m) => {
    if (m.typeName === STRUCT || seen.has(m.typeName)) return;
    seen.set(m.typeName, m);
    for (const f of m.fields) if (f.message) visit(f.message);
  };
  for (const r of roots) visit(r);
  return [...seen.values()];
}

const scalarInfo = (field) =>
  field.fieldKind === "enum" || field.listKind === "enum" || field.mapKind === "enum" ? ENUM : SCALARS[field.scalar];

/** The checked value of a field: the runtime's check for its type, told the field's name. */
const check = (info, expr, field) => `${info.check}(${expr}, ${JSON.stringify(field.localName)})`;

// ---- size pass -------------------------------------------------------------------------------

/** Lines adding the size of value `v` of a singular scalar (tag included) to n. */
function sizeScalar(info, tagSize, v) {
  if (info.wire === 2 && info.check === "str")
    return [`{ const k = utf8Size(${v}); s.push(k); n += ${tagSize} + varintSize(k) + k; }`];
  return [`n += ${tagSize} + ${info.size(v)};`];
}
/** Lines adding a sub-message's size (tag included) to n; its size is recorded for the write. */
function sizeMessage(desc, tagSize, v) {
  const fn = desc.typeName === STRUCT ? "sizeStruct" : `size_${ident(desc)}`;
  return [
    `{ const at = s.length; s.push(0); const k = ${fn}(${v}, s); s[at] = k; n += ${tagSize} + varintSize(k) + k; }`,
  ];
}
function writeScalarValue(info, v) {
  return info.check === "str" ? `w.string(${v}, w.size());` : info.write(v);
}
function writeMessageValue(desc, v) {
  const fn = desc.typeName === STRUCT ? "writeStruct" : `write_${ident(desc)}`;
  return `w.varint(w.size()); ${fn}(w, ${v});`;
}

function fieldSize(field) {
  const L = field.localName;
  const out = [];
  if (field.fieldKind === "scalar" || field.fieldKind === "enum") {
    const info = scalarInfo(field);
    const ts = varintLen(tagOf(field.number, info.wire));
    if (field.oneof) {
      out.push(`if (m.${field.oneof.localName}?.case === ${JSON.stringify(L)}) {`);
      out.push(`  const v = ${check(info, `m.${field.oneof.localName}.value`, field)};`);
      out.push(...sizeScalar(info, ts, "v").map((l) => `  ${l}`));
      out.push("}");
    } else if (field.presence === 1 /* explicit presence */) {
      out.push(`if (m.${L} !== undefined) {`);
      out.push(`  const v = ${check(info, `m.${L}`, field)};`);
      out.push(...sizeScalar(info, ts, "v").map((l) => `  ${l}`));
      out.push("}");
    } else {
      out.push(`if (m.${L} !== undefined) {`);
      out.push(`  const v = ${check(info, `m.${L}`, field)};`);
      out.push(`  if (!(${info.zero("v")})) ${sizeScalar(info, ts, "v").join(" ")}`);
      out.push("}");
    }
  } else if (field.fieldKind === "message") {
    const ts = varintLen(tagOf(field.number, 2));
    if (field.oneof) {
      out.push(
        `if (m.${field.oneof.localName}?.case === ${JSON.stringify(L)}) ${sizeMessage(field.message, ts, `msg(m.${field.oneof.localName}.value, ${JSON.stringify(L)})`)}`,
      );
    } else {
      // A Struct field takes any value, as protobuf-es does (see the runtime), null as unset.
      if (field.message.typeName === STRUCT)
        out.push(`if (m.${L} != null) ${sizeMessage(field.message, ts, `m.${L}`)}`);
      else out.push(`if (m.${L} !== undefined) ${sizeMessage(field.message, ts, `msg(m.${L}, ${JSON.stringify(L)})`)}`);
    }
  } else if (field.fieldKind === "list") {
    out.push(`if (m.${L} !== undefined) {`);
    out.push(`  const v = m.${L};`);
    if (field.listKind === "message") {
      const ts = varintLen(tagOf(field.number, 2));
      out.push(
        `  for (let i = 0; i < v.length; i++) ${sizeMessage(field.message, ts, `msg(v[i], ${JSON.stringify(L)})`)}`,
      );
    } else {
      const info = scalarInfo(field);
      if (field.packed && info.wire !== 2) {
        const ts = varintLen(tagOf(field.number, 2));
        out.push("  if (v.length > 0) {");
        out.push("    let p = 0;");
        out.push(`    for (let i = 0; i < v.length; i++) p += ${info.size(check(info, "v[i]", field))};`);
        out.push(`    s.push(p); n += ${ts} + varintSize(p) + p;`);
        out.push("  }");
      } else {
        const ts = varintLen(tagOf(field.number, info.wire));
        out.push(
          `  for (let i = 0; i < v.length; i++) { const e = ${check(info, "v[i]", field)}; ${sizeScalar(info, ts, "e").join(" ")} }`,
        );
      }
    }
    out.push("}");
  } else if (field.fieldKind === "map") {
    const ts = varintLen(tagOf(field.number, 2));
    out.push(`if (m.${L} !== undefined) {`);
    out.push(`  const v = m.${L};`);
    out.push("  for (const key of Object.keys(v)) {");
    out.push("    const kk = utf8Size(key);");
    if (field.mapKind === "message") {
      const fn = `size_${ident(field.message)}`;
      out.push(
        `    const at = s.length; s.push(0, kk, 0); const vk = ${fn}(msg(v[key], ${JSON.stringify(L)}), s); s[at + 2] = vk;`,
      );
      out.push("    const entry = 1 + varintSize(kk) + kk + 1 + varintSize(vk) + vk; s[at] = entry;");
    } else {
      const info = scalarInfo(field);
      const vs = varintLen(tagOf(2, info.wire));
      out.push(`    const e = ${check(info, "v[key]", field)};`);
      if (info.check === "str") {
        out.push("    const vk = utf8Size(e); const at = s.length; s.push(0, kk, vk);");
        out.push(`    const entry = 1 + varintSize(kk) + kk + ${vs} + varintSize(vk) + vk; s[at] = entry;`);
      } else {
        out.push("    const at = s.length; s.push(0, kk);");
        out.push(`    const entry = 1 + varintSize(kk) + kk + ${vs} + ${info.size("e")}; s[at] = entry;`);
      }
    }
    out.push(`    n += ${ts} + varintSize(entry) + entry;`);
    out.push("  }");
    out.push("}");
  }
  return out;
}

// ---- write pass ------------------------------------------------------------------------------

/** A sub-message the size pass took (msg()): undefined there was an empty message. */
const orEmpty = (v) => `(${v} === undefined ? EMPTY : ${v})`;

function fieldWrite(field) {
  const L = field.localName;
  const out = [];
  if (field.fieldKind === "scalar" || field.fieldKind === "enum") {
    const info = scalarInfo(field);
    const tag = writeTag(field.number, info.wire);
    if (field.oneof) {
      const o = `m.${field.oneof.localName}`;
      out.push(`if (${o}?.case === ${JSON.stringify(L)}) { ${tag} ${writeScalarValue(info, `${o}.value`)} }`);
    } else if (field.presence === 1) {
      out.push(`if (m.${L} !== undefined) { ${tag} ${writeScalarValue(info, `m.${L}`)} }`);
    } else {
      out.push(`if (m.${L} !== undefined && !(${info.zero(`m.${L}`)})) { ${tag} ${writeScalarValue(info, `m.${L}`)} }`);
    }
  } else if (field.fieldKind === "message") {
    const tag = writeTag(field.number, 2);
    if (field.oneof) {
      const o = `m.${field.oneof.localName}`;
      out.push(
        `if (${o}?.case === ${JSON.stringify(L)}) { ${tag} ${writeMessageValue(field.message, orEmpty(`${o}.value`))} }`,
      );
    } else {
      const set = field.message.typeName === STRUCT ? `m.${L} != null` : `m.${L} !== undefined`;
      out.push(`if (${set}) { ${tag} ${writeMessageValue(field.message, `m.${L}`)} }`);
    }
  } else if (field.fieldKind === "list") {
    out.push(`if (m.${L} !== undefined) {`);
    out.push(`  const v = m.${L};`);
    if (field.listKind === "message") {
      out.push(
        `  for (let i = 0; i < v.length; i++) { ${writeTag(field.number, 2)} ${writeMessageValue(field.message, orEmpty("v[i]"))} }`,
      );
    } else {
      const info = scalarInfo(field);
      if (field.packed && info.wire !== 2) {
        out.push(
          `  if (v.length > 0) { ${writeTag(field.number, 2)} w.varint(w.size()); for (let i = 0; i < v.length; i++) ${info.write("v[i]")} }`,
        );
      } else {
        out.push(
          `  for (let i = 0; i < v.length; i++) { ${writeTag(field.number, info.wire)} ${writeScalarValue(info, "v[i]")} }`,
        );
      }
    }
    out.push("}");
  } else if (field.fieldKind === "map") {
    out.push(`if (m.${L} !== undefined) {`);
    out.push(`  const v = m.${L};`);
    out.push("  for (const key of Object.keys(v)) {");
    out.push(`    ${writeTag(field.number, 2)} w.varint(w.size());`);
    out.push("    w.byte(10); w.string(key, w.size());");
    if (field.mapKind === "message") {
      out.push(`    w.byte(18); ${writeMessageValue(field.message, orEmpty("v[key]"))}`);
    } else {
      const info = scalarInfo(field);
      out.push(`    ${writeTag(2, info.wire)} ${writeScalarValue(info, "v[key]")}`);
    }
    out.push("  }");
    out.push("}");
  }
  return out;
}

// ---- read pass -------------------------------------------------------------------------------

function defaultOf(field) {
  switch (field.fieldKind) {
    case "scalar":
      switch (field.scalar) {
        case ScalarType.STRING:
          return '""';
        case ScalarType.BYTES:
          return "new Uint8Array(0)";
        case ScalarType.BOOL:
          return "false";
        default:
          return "0";
      }
    case "enum":
      return String(field.enum.values[0].number);
    case "list":
      return "[]";
    case "map":
      return "{}";
  }
  return undefined;
}

const isBytes = (field) => field.fieldKind === "scalar" && field.scalar === ScalarType.BYTES;

function readMessageExpr(desc, end, into) {
  return desc.typeName === STRUCT
    ? `readStruct(r, ${end}, ${into}, depth + 1)`
    : `read_${ident(desc)}(r, ${end}, ${into}, depth + 1)`;
}

/**
 * Adds one element read from the wire to the list field `L`. Most lists hold one element (a
 * header's value, an answer's reply), and V8 gives an empty array a backing store of 16 slots on
 * its first push: 128 bytes more than the one-element array made here, for every such field read.
 */
function append(L, read) {
  return `{ const v = ${read}; const a = m.${L}; if (a.length === 0) m.${L} = [v]; else a.push(v); }`;
}

/** `case <tag>:` blocks for one field: its wire type, and wire type 2 for a packed list. */
function fieldRead(field) {
  const L = field.localName;
  const out = [];
  const cs = (wire, body) => out.push(`case ${tagOf(field.number, wire)}: { ${body} break; }`);
  if (field.fieldKind === "scalar" || field.fieldKind === "enum") {
    const info = scalarInfo(field);
    if (field.oneof) cs(info.wire, `m.${field.oneof.localName} = { case: ${JSON.stringify(L)}, value: ${info.read} };`);
    else cs(info.wire, `m.${L} = ${info.read};`);
  } else if (field.fieldKind === "message") {
    if (field.oneof) {
      const o = `m.${field.oneof.localName}`;
      cs(
        2,
        `const e = r.len(); const o = ${o}; ${o} = { case: ${JSON.stringify(L)}, value: ${readMessageExpr(field.message, "e", `o !== undefined && o.case === ${JSON.stringify(L)} ? o.value : undefined`)} };`,
      );
    } else cs(2, `const e = r.len(); m.${L} = ${readMessageExpr(field.message, "e", `m.${L}`)};`);
  } else if (field.fieldKind === "list") {
    if (field.listKind === "message")
      cs(2, `const e = r.len(); ${append(L, readMessageExpr(field.message, "e", "undefined"))}`);
    else {
      const info = scalarInfo(field);
      cs(info.wire, append(L, info.read));
      if (info.wire !== 2) cs(2, `const e = r.len(); while (r.pos < e) m.${L}.push(${info.read}); ended(r, e);`);
    }
  } else if (field.fieldKind === "map") {
    let value;
    let dflt;
    let vtag;
    if (field.mapKind === "message") {
      vtag = tagOf(2, 2);
      // A value read twice within one entry is merged, as any singular message field.
      value = `{ const ve = r.len(); val = ${readMessageExpr(field.message, "ve", "val")}; }`;
      dflt = `read_${ident(field.message)}(r, r.pos, undefined, depth + 1)`;
    } else {
      const info = scalarInfo(field);
      vtag = tagOf(2, info.wire);
      value = `val = ${info.read};`;
      dflt = defaultOf({
        fieldKind: field.mapKind === "enum" ? "enum" : "scalar",
        scalar: field.scalar,
        enum: field.enum,
      });
    }
    cs(
      2,
      [
        "const e = r.len();",
        'let key = "";',
        "let val;",
        "while (r.pos < e) {",
        "  const t = r.tag();",
        "  if (t === 10) key = r.string();",
        `  else if (t === ${vtag}) ${value}`,
        // Other fields of an entry are skipped, as protobuf-es skips them.
        "  else { if (t >>> 3 === 1 || t >>> 3 === 2) wrongWireType(t); r.skip(t, e, depth); }",
        "}",
        "ended(r, e);",
        `setOwn(m.${L}, key, val === undefined ? ${dflt} : val);`,
      ].join(" "),
    );
  }
  return out;
}

// ---- the file --------------------------------------------------------------------------------

function generateMessage(f, desc) {
  const why = desc.fields.map((field) => [field, unsupported(field)]).filter(([, w]) => w !== undefined);
  const id = ident(desc);
  const sorted = desc.fields.concat().sort((a, b) => a.number - b.number);
  f.print(`// ${desc.typeName}`);
  if (why.length > 0) {
    const reasons = why.map(([field, w]) => `${field.name}: ${w}`).join("; ");
    throw new Error(
      `protoc-gen-fastcodec: ${desc.typeName} has a field type without direct code (${reasons}): add it to the generator and its runtime`,
    );
  }
  f.print(`export function size_${id}(m: any, s: number[]): number {`);
  f.print("  let n = 0;");
  for (const field of sorted) for (const l of fieldSize(field)) f.print(`  ${l}`);
  f.print("  n += unknownSize(m.$unknown);");
  f.print("  return n;");
  f.print("}");
  f.print(`export function write_${id}(w: Writer, m: any): void {`);
  for (const field of sorted) for (const l of fieldWrite(field)) f.print(`  ${l}`);
  f.print("  w.unknown(m.$unknown);");
  f.print("}");
  // The object protobuf-es's create() makes, field by field.
  const init = [`$typeName: ${JSON.stringify(desc.typeName)}`];
  for (const field of desc.fields) {
    if (field.oneof) continue;
    if (field.fieldKind === "message") continue;
    if ((field.fieldKind === "scalar" || field.fieldKind === "enum") && field.presence === 1) continue;
    // A bytes field gets its own empty array, as from protobuf-es, only if it is not read: a
    // typed array is a costly object to make and drop on every message.
    init.push(`${field.localName}: ${isBytes(field) ? "undefined" : defaultOf(field)}`);
  }
  // Oneofs start undefined, so that a set one costs one object, not two; an unset one gets its
  // { case: undefined } at the end.
  for (const oneof of desc.oneofs) init.push(`${oneof.localName}: undefined`);
  f.print(`export function read_${id}(r: Reader, end: number, into: any, depth: number): any {`);
  f.print("  if (depth > RECURSION_LIMIT) tooDeep();");
  f.print(`  const m = into ?? { ${init.join(", ")} };`);
  f.print("  while (r.pos < end) {");
  f.print("    const t = r.tag();");
  f.print("    switch (t) {");
  for (const field of sorted) for (const l of fieldRead(field)) f.print(`      ${l}`);
  f.print("      default: {");
  if (sorted.length > 0) {
    const known = sorted.map((field) => `no === ${field.number}`).join(" || ");
    f.print("        const no = t >>> 3;");
    f.print("        // A known field with another wire type: refused (see the runtime).");
    f.print(`        if (${known}) wrongWireType(t);`);
  }
  f.print("        r.unknown(m, t, end, depth);");
  f.print("      }");
  f.print("    }");
  f.print("  }");
  f.print("  ended(r, end);");
  for (const oneof of desc.oneofs)
    f.print(`  if (m.${oneof.localName} === undefined) m.${oneof.localName} = { case: undefined };`);
  for (const field of desc.fields)
    if (isBytes(field) && !field.oneof && field.presence !== 1)
      f.print(`  if (m.${field.localName} === undefined) m.${field.localName} = new Uint8Array(0);`);
  f.print("  return m;");
  f.print("}");
  f.print();
  return true;
}

/** The encode and decode functions of a root message; exported under the message's name when `exported`. */
function generateCodec(f, r, exported) {
  const id = ident(r);
  const Schema = f.importSchema(r, true);
  const Shape = f.importShape(r);
  const encode = exported ? f.export("function", `encode${r.name}`) : `function encode_${id}`;
  const decode = exported ? f.export("function", `decode${r.name}`) : `function decode_${id}`;
  f.print(`/** Encodes a ${r.typeName} (a message or a plain init object) as protobuf-es's toBinary would. */`);
  f.print(encode, "(m: ", f.import("MessageInitShape", "@bufbuild/protobuf", true), "<typeof ", Schema, ">): Buffer {");
  f.print("  try {");
  f.print("    const s: number[] = [];");
  f.print(`    const n = size_${id}(m, s);`);
  f.print("    const w = new Writer(Buffer.allocUnsafe(n), s);");
  f.print(`    write_${id}(w, m);`);
  f.print("    return w.buf;");
  f.print("  } catch (error) {");
  f.print(`    throw encodeError(${JSON.stringify(r.typeName)}, error);`);
  f.print("  }");
  f.print("}");
  f.print();
  f.print(
    `/** Decodes a ${r.typeName} as protobuf-es's fromBinary would, unknown fields kept; throws a CodecError on bytes that are none. */`,
  );
  f.print(decode, "(bytes: Uint8Array): ", Shape, " {");
  f.print("  const buf = asBuffer(bytes);");
  f.print("  try {");
  f.print(`    return read_${id}(new Reader(buf, 0, buf.length), buf.length, undefined, 1);`);
  f.print("  } catch (error) {");
  f.print(`    throw decodeError(${JSON.stringify(r.typeName)}, error);`);
  f.print("  }");
  f.print("}");
  f.print();
  return {
    typeName: r.typeName,
    encode: exported ? `encode${r.name}` : `encode_${id}`,
    decode: exported ? `decode${r.name}` : `decode_${id}`,
  };
}

function generateTs(schema) {
  const { runtime } = schema.options;
  if (!runtime)
    throw new Error(
      "protoc-gen-fastcodec: option 'runtime' is missing: set runtime=<import path of runtime.js> in buf.gen.yaml",
    );
  /** Per file: the messages it exports codecs for, its services' messages (the roots). */
  const rootsOf = new Map();
  for (const file of schema.files) {
    const fileRoots = new Map();
    for (const s of file.services)
      for (const method of s.methods) for (const m of [method.input, method.output]) fileRoots.set(m.typeName, m);
    rootsOf.set(file, fileRoots);
  }
  // Each message any root reaches has its code once, in its own file's output; others import it.
  const reached = closure([...rootsOf.values()].flatMap((r) => [...r.values()]));
  for (const file of schema.files) {
    const fileServices = file.services;
    const fileRoots = rootsOf.get(file);
    const owned = reached.filter((m) => m.file === file);
    if (fileRoots.size === 0 && owned.length === 0) continue;
    const f = schema.generateFile(`${file.name}_fast.ts`);
    f.preamble(file);
    f.print("// The codecs of this file's services' messages, and the services as our RPC layer calls them,");
    f.print("// with no protobuf-es at run time; see scripts/protoc-gen-fastcodec.mjs.");
    f.print();
    // The generated bodies name the runtime's exports as they are: one plain import of them all.
    const from = posix.relative(posix.dirname(file.name), posix.normalize(runtime));
    const runtimePath = from.startsWith(".") ? from : `./${from}`;
    f.print(`import { ${RUNTIME.join(", ")} } from "${runtimePath}";`);
    if (fileServices.length > 0)
      f.print(
        `import { type Method, type Service, service } from "${posix.join(posix.dirname(runtimePath), "service.js")}";`,
      );
    // The code of the messages of other files that this file's roots reach, from their files.
    const foreign = new Map();
    for (const m of closure([...fileRoots.values()]))
      if (m.file !== file) foreign.set(m.file, [...(foreign.get(m.file) ?? []), m]);
    for (const [other, list] of foreign) {
      const names = list.flatMap((m) => ["size", "write", "read"].map((p) => `${p}_${ident(m)}`));
      const path = posix.relative(posix.dirname(file.name), `${other.name}_fast.js`);
      f.print(`import { ${names.join(", ")} } from "${path.startsWith(".") ? path : `./${path}`}";`);
    }
    f.print();
    for (const desc of owned) generateMessage(f, desc);
    const codecs = new Map();
    for (const r of fileRoots.values()) codecs.set(r.typeName, generateCodec(f, r, r.file === file));
    for (const s of fileServices) {
      f.print(`/** ${s.typeName}: its methods, each with the codecs of its messages. */`);
      f.print(f.export("const", s.name), ": Service<{");
      for (const method of s.methods)
        f.print(
          `  ${method.localName}: Method<${JSON.stringify(method.methodKind)}, typeof `,
          f.importSchema(method.input, true),
          ", typeof ",
          f.importSchema(method.output, true),
          ">;",
        );
      f.print(`}> = /*@__PURE__*/ service(${JSON.stringify(s.typeName)}, [`);
      for (const method of s.methods) {
        const i = codecs.get(method.input.typeName);
        const o = codecs.get(method.output.typeName);
        f.print(
          `  [${JSON.stringify(method.name)}, ${JSON.stringify(method.localName)}, ${JSON.stringify(method.methodKind)}, `,
          `{ typeName: ${JSON.stringify(i.typeName)}, encode: ${i.encode}, decode: ${i.decode} }, `,
          `{ typeName: ${JSON.stringify(o.typeName)}, encode: ${o.encode}, decode: ${o.decode} }],`,
        );
      }
      f.print("]);");
      f.print();
    }
    f.print("/** This file's codecs, by the type name of their message. */");
    f.print(
      f.export("const", "fastCodecs"),
      ": readonly { typeName: string; encode: (m: never) => Buffer; decode: (bytes: Uint8Array) => unknown }[] = [",
    );
    for (const c of codecs.values())
      f.print(`  { typeName: ${JSON.stringify(c.typeName)}, encode: ${c.encode}, decode: ${c.decode} },`);
    f.print("];");
  }
}

const plugin = createEcmaScriptPlugin({
  name: "protoc-gen-fastcodec",
  version: "v1",
  parseOptions(raw) {
    const options = { runtime: "" };
    for (const { key, value } of raw) {
      if (key === "runtime") options.runtime = value;
      else throw new Error(`protoc-gen-fastcodec: unknown option "${key}": the one option is runtime=`);
    }
    return options;
  },
  generateTs,
});

runNodeJs(plugin);
