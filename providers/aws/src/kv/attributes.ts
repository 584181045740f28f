/**
 * JSON values as DynamoDB attribute values and back. Numbers travel as DynamoDB numbers (strings on
 * the wire): String(x) of a double has at most 17 significant digits, within DynamoDB's 38, and
 * Number() of what DynamoDB returns is x again (the kv service refuses numbers outside DynamoDB's
 * range before they get here). Attribute names are data: a `__proto__` name is an own property
 * both ways, never a prototype, and is stored as `\__proto__` (@nitric-like/spec's
 * toAttributeName), since dynalite and other code on the way loses an attribute of that name.
 */

import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { fromAttributeName, setOwn, toAttributeName } from "@nitric-like/spec";
import type { AttributeValue } from "../aws/dynamodb.js";

/** A JSON value as an attribute value. */
export function toAttribute(value: JsonValue): AttributeValue {
  if (value === null) return { NULL: true };
  if (typeof value === "string") return { S: value };
  if (typeof value === "number") return { N: String(value) };
  if (typeof value === "boolean") return { BOOL: value };
  if (Array.isArray(value)) return { L: value.map(toAttribute) };
  return { M: toAttributes(value) };
}

/** A JSON object as an attribute map. */
export function toAttributes(value: JsonObject): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const [key, v] of Object.entries(value)) if (v !== undefined) setOwn(out, toAttributeName(key), toAttribute(v));
  return out;
}

/** An attribute value as JSON (sets become arrays, binary becomes base64). */
export function fromAttribute(value: AttributeValue): JsonValue {
  if (value.S !== undefined) return value.S;
  if (value.N !== undefined) return Number(value.N);
  if (value.BOOL !== undefined) return value.BOOL;
  if (value.NULL !== undefined) return null;
  if (value.L !== undefined) return value.L.map(fromAttribute);
  if (value.M !== undefined) return fromAttributes(value.M);
  if (value.SS !== undefined) return value.SS;
  if (value.NS !== undefined) return value.NS.map(Number);
  if (value.B !== undefined) return value.B; // base64 on the wire already
  if (value.BS !== undefined) return value.BS;
  return null;
}

/** An attribute map as a JSON object. */
export function fromAttributes(value: Record<string, AttributeValue>): JsonObject {
  const out: JsonObject = {};
  for (const [key, v] of Object.entries(value)) setOwn(out, fromAttributeName(key), fromAttribute(v));
  return out;
}
