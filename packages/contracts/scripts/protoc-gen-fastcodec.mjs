#!/usr/bin/env node
import { posix } from "node:path";
/**
 * protoc-gen-fastcodec: a protoc plugin (run by `buf generate`, see proto/buf.gen.yaml) that writes
 * direct protobuf encoders and decoders for the messages of the hot paths, from the same
 * descriptors protoc-gen-es reads, so they cannot drift from proto/.
 *
 * Options:
 *   root=<type name>   a message to export `encode<Name>` / `decode<Name>` for (repeatable); every
 *                      message it reaches gets the same treatment, in the root's file
 *   runtime=<path>     the import path of src/fastcodec/runtime.ts, from the output root
 *
 * What the generated code does, message by message: a size pass (strings measured once, sizes
 * kept in pre-order), a write pass into one buffer, and a reader that fills protobuf-es-shaped
 * objects. Fields are written in field-number order with protobuf-es's presence rules, and unknown
 * fields are kept on read (`$unknown`, raw bytes) and written back after the known ones, as
 * protobuf-es does. A field type the generator has no direct code for (64-bit integers, sint32,
 * groups, wrapper and Value/ListValue fields, non-string map keys) makes its message always take
 * protobuf-es: still correct, only slower; such messages are listed in the file's `slowMessages`,
 * which a test expects to be empty.
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
  "SLOW",
  "fallbacks",
  "Writer",
  "Reader",
  "asBuffer",
  "bool",
  "bytes",
  "int32",
  "int32Size",
  "msg",
  "num",
  "readStruct",
  "sizeStruct",
  "str",
  "uint32",
  "unknownSize",
  "utf8Size",
  "varintSize",
  "writeStruct",
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
      out.push(`  const v = ${info.check}(m.${field.oneof.localName}.value);`);
      out.push(...sizeScalar(info, ts, "v").map((l) => `  ${l}`));
      out.push("}");
    } else if (field.presence === 1 /* explicit presence */) {
      out.push(`if (m.${L} !== undefined) {`);
      out.push(`  const v = ${info.check}(m.${L});`);
      out.push(...sizeScalar(info, ts, "v").map((l) => `  ${l}`));
      out.push("}");
    } else {
      out.push(`if (m.${L} !== undefined) {`);
      out.push(`  const v = ${info.check}(m.${L});`);
      out.push(`  if (!(${info.zero("v")})) ${sizeScalar(info, ts, "v").join(" ")}`);
      out.push("}");
    }
  } else if (field.fieldKind === "message") {
    const ts = varintLen(tagOf(field.number, 2));
    if (field.oneof) {
      out.push(
        `if (m.${field.oneof.localName}?.case === ${JSON.stringify(L)}) ${sizeMessage(field.message, ts, `msg(m.${field.oneof.localName}.value)`)}`,
      );
    } else {
      out.push(`if (m.${L} !== undefined) ${sizeMessage(field.message, ts, `m.${L}`)}`);
    }
  } else if (field.fieldKind === "list") {
    out.push(`if (m.${L} !== undefined) {`);
    out.push(`  const v = m.${L};`);
    if (field.listKind === "message") {
      const ts = varintLen(tagOf(field.number, 2));
      out.push(`  for (let i = 0; i < v.length; i++) ${sizeMessage(field.message, ts, "msg(v[i])")}`);
    } else {
      const info = scalarInfo(field);
      if (field.packed && info.wire !== 2) {
        const ts = varintLen(tagOf(field.number, 2));
        out.push("  if (v.length > 0) {");
        out.push("    let p = 0;");
        out.push(`    for (let i = 0; i < v.length; i++) p += ${info.size(`${info.check}(v[i])`)};`);
        out.push(`    s.push(p); n += ${ts} + varintSize(p) + p;`);
        out.push("  }");
      } else {
        const ts = varintLen(tagOf(field.number, info.wire));
        out.push(
          `  for (let i = 0; i < v.length; i++) { const e = ${info.check}(v[i]); ${sizeScalar(info, ts, "e").join(" ")} }`,
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
      out.push(`    const at = s.length; s.push(0, kk, 0); const vk = ${fn}(msg(v[key]), s); s[at + 2] = vk;`);
      out.push("    const entry = 1 + varintSize(kk) + kk + 1 + varintSize(vk) + vk; s[at] = entry;");
    } else {
      const info = scalarInfo(field);
      const vs = varintLen(tagOf(2, info.wire));
      out.push(`    const e = ${info.check}(v[key]);`);
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
      out.push(`if (${o}?.case === ${JSON.stringify(L)}) { ${tag} ${writeMessageValue(field.message, `${o}.value`)} }`);
    } else {
      out.push(`if (m.${L} !== undefined) { ${tag} ${writeMessageValue(field.message, `m.${L}`)} }`);
    }
  } else if (field.fieldKind === "list") {
    out.push(`if (m.${L} !== undefined) {`);
    out.push(`  const v = m.${L};`);
    if (field.listKind === "message") {
      out.push(
        `  for (let i = 0; i < v.length; i++) { ${writeTag(field.number, 2)} ${writeMessageValue(field.message, "v[i]")} }`,
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
      out.push(`    w.byte(18); ${writeMessageValue(field.message, "v[key]")}`);
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
  return desc.typeName === STRUCT ? `readStruct(r, ${end}, ${into})` : `read_${ident(desc)}(r, ${end}, ${into})`;
}

/** `case <tag>:` blocks for one field. */
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
      cs(2, `const e = r.len(); m.${L}.push(${readMessageExpr(field.message, "e", "undefined")});`);
    else {
      const info = scalarInfo(field);
      cs(info.wire, `m.${L}.push(${info.read});`);
      if (info.wire !== 2)
        cs(2, `const e = r.len(); while (r.pos < e) m.${L}.push(${info.read}); if (r.pos !== e) throw SLOW;`);
    }
  } else if (field.fieldKind === "map") {
    let value;
    let dflt;
    let vtag;
    if (field.mapKind === "message") {
      vtag = tagOf(2, 2);
      value = `{ const ve = r.len(); val = ${readMessageExpr(field.message, "ve", "val")}; }`;
      dflt = `${readMessageExpr(field.message, "r.pos", "undefined")}`;
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
        "  const t = r.varint();",
        "  if (t === 10) key = r.string();",
        `  else if (t === ${vtag}) ${value}`,
        // protobuf-es skips other fields of an entry; rare enough to leave to it.
        "  else throw SLOW;",
        "}",
        // A "__proto__" key would set the record's prototype: protobuf-es sets it as an own property.
        'if (r.pos !== e || key === "__proto__") throw SLOW;',
        `m.${L}[key] = val === undefined ? ${dflt} : val;`,
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
    f.print(`// Always protobuf-es (${reasons}).`);
    f.print(`function size_${id}(_m: any, _s: number[]): number { throw SLOW; }`);
    f.print(`function write_${id}(_w: Writer, _m: any): void { throw SLOW; }`);
    f.print(`function read_${id}(_r: Reader, _end: number, _into: any): any { throw SLOW; }`);
    f.print();
    return false;
  }
  f.print(`function size_${id}(m: any, s: number[]): number {`);
  f.print("  let n = 0;");
  for (const field of sorted) for (const l of fieldSize(field)) f.print(`  ${l}`);
  f.print("  n += unknownSize(m.$unknown);");
  f.print("  return n;");
  f.print("}");
  f.print(`function write_${id}(w: Writer, m: any): void {`);
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
  const known = sorted.map((field) => `no === ${field.number}`).join(" || ");
  f.print(`function read_${id}(r: Reader, end: number, into: any): any {`);
  f.print(`  const m = into ?? { ${init.join(", ")} };`);
  f.print("  while (r.pos < end) {");
  f.print("    const t = r.varint();");
  f.print("    switch (t) {");
  for (const field of sorted) for (const l of fieldRead(field)) f.print(`      ${l}`);
  f.print("      default: {");
  if (known) {
    f.print("        const no = t >>> 3;");
    f.print("        // A known field with another wire type: protobuf-es decides what it means.");
    f.print(`        if (${known}) throw SLOW;`);
  }
  f.print("        r.unknown(m, t);");
  f.print("      }");
  f.print("    }");
  f.print("  }");
  f.print("  if (r.pos !== end) throw SLOW;");
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

function generateTs(schema) {
  const { roots, runtime } = schema.options;
  if (!runtime)
    throw new Error(
      "protoc-gen-fastcodec: option 'runtime' is missing: set runtime=<import path of runtime.js> in buf.gen.yaml",
    );
  const wanted = new Set(roots);
  const found = new Set();
  for (const file of schema.files) {
    const fileRoots = file.messages.filter((m) => wanted.has(m.typeName));
    if (fileRoots.length === 0) continue;
    for (const r of fileRoots) found.add(r.typeName);
    const f = schema.generateFile(`${file.name}_fast.ts`);
    f.preamble(file);
    f.print("// Direct encoders and decoders for this file's hot messages; see scripts/protoc-gen-fastcodec.mjs.");
    f.print();
    // The generated bodies name the runtime's exports as they are: one plain import of them all.
    const from = posix.relative(posix.dirname(file.name), posix.normalize(runtime));
    f.print(`import { ${RUNTIME.join(", ")} } from "${from.startsWith(".") ? from : `./${from}`}";`);
    f.print();
    const slow = [];
    for (const desc of closure(fileRoots)) if (!generateMessage(f, desc)) slow.push(desc.typeName);
    f.print("/** Messages of this file's hot set that always take protobuf-es (a field type without direct code). */");
    f.print(f.export("const", "slowMessages"), ": readonly string[] = ", JSON.stringify(slow), ";");
    f.print();
    const codecs = [];
    for (const r of fileRoots) {
      const name = r.name;
      const Schema = f.importSchema(r);
      const Shape = f.importShape(r);
      const id = ident(r);
      f.print(`/** Encodes a ${r.typeName} as protobuf-es's toBinary would, unknown fields included. */`);
      f.print(
        f.export("function", `encode${name}`),
        "(m: ",
        f.import("MessageInitShape", "@bufbuild/protobuf", true),
        "<typeof ",
        Schema,
        ">): Buffer {",
      );
      f.print("  try {");
      f.print("    const s: number[] = [];");
      f.print(`    const n = size_${id}(m, s);`);
      f.print("    const w = new Writer(Buffer.allocUnsafe(n), s);");
      f.print(`    write_${id}(w, m);`);
      f.print("    return w.buf;");
      f.print("  } catch (error) {");
      f.print("    if (error !== SLOW) throw error;");
      f.print(
        "    const bytes = ",
        f.import("toBinary", "@bufbuild/protobuf"),
        "(",
        Schema,
        ", ",
        f.import("create", "@bufbuild/protobuf"),
        "(",
        Schema,
        ", m));",
      );
      f.print("    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);");
      f.print("  }");
      f.print("}");
      f.print();
      f.print(`/** Decodes a ${r.typeName} as protobuf-es's fromBinary would, unknown fields kept. */`);
      f.print(f.export("function", `decode${name}`), "(bytes: Uint8Array): ", Shape, " {");
      f.print("  const buf = asBuffer(bytes);");
      f.print("  try {");
      f.print(`    return read_${id}(new Reader(buf, 0, buf.length), buf.length, undefined);`);
      f.print("  } catch (error) {");
      f.print("    if (error !== SLOW) throw error;");
      f.print("    fallbacks.decode++;");
      f.print("    return ", f.import("fromBinary", "@bufbuild/protobuf"), "(", Schema, ", bytes);");
      f.print("  }");
      f.print("}");
      f.print();
      codecs.push(`{ typeName: ${JSON.stringify(r.typeName)}, encode: encode${name}, decode: decode${name} }`);
    }
    f.print("/** This file's codecs, by the type name of their message. */");
    f.print(
      f.export("const", "fastCodecs"),
      ": readonly { typeName: string; encode: (m: never) => Buffer; decode: (bytes: Uint8Array) => unknown }[] = [",
    );
    for (const c of codecs) f.print(`  ${c},`);
    f.print("];");
  }
  const missing = [...wanted].filter((r) => !found.has(r));
  if (missing.length > 0)
    throw new Error(
      `protoc-gen-fastcodec: root message ${missing.map((m) => `"${m}"`).join(", ")} not found: check the root= options in buf.gen.yaml`,
    );
}

const plugin = createEcmaScriptPlugin({
  name: "protoc-gen-fastcodec",
  version: "v1",
  parseOptions(raw) {
    const options = { roots: [], runtime: "" };
    for (const { key, value } of raw) {
      if (key === "root") options.roots.push(value);
      else if (key === "runtime") options.runtime = value;
      else throw new Error(`protoc-gen-fastcodec: unknown option "${key}": use root= or runtime=`);
    }
    return options;
  },
  generateTs,
});

runNodeJs(plugin);
