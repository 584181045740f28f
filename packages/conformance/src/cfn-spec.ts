/**
 * Checks a CloudFormation template against the CloudFormation resource specification shipped in
 * `@aws-cdk/aws-service-spec`: every resource type exists, every property is known, every
 * required property is there, literal values have the right kind (nested property types
 * included), and every Ref, Fn::GetAtt (with an attribute the type has), Fn::Sub variable and
 * DependsOn names something in the template.
 */
import { loadAwsServiceSpec } from "@aws-cdk/aws-service-spec";

type Db = Awaited<ReturnType<typeof loadAwsServiceSpec>>;
type PropertyType = { type: string; element?: PropertyType; types?: PropertyType[]; reference?: { $ref: string } };
type Property = { type: PropertyType; required?: boolean };
type ResourceSpec = {
  cloudFormationType: string;
  properties: Record<string, Property>;
  attributes: Record<string, unknown>;
};

let loaded: Promise<Db> | undefined;
const PSEUDO = new Set([
  "AWS::Region",
  "AWS::AccountId",
  "AWS::StackName",
  "AWS::StackId",
  "AWS::URLSuffix",
  "AWS::Partition",
  "AWS::NoValue",
  "AWS::NotificationARNs",
]);
const SECTIONS = new Set([
  "AWSTemplateFormatVersion",
  "Description",
  "Metadata",
  "Parameters",
  "Rules",
  "Mappings",
  "Conditions",
  "Transform",
  "Resources",
  "Outputs",
]);

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isIntrinsic = (v: unknown) => {
  if (!isObject(v)) return false;
  const keys = Object.keys(v);
  return keys.length === 1 && (keys[0] === "Ref" || keys[0]?.startsWith("Fn::") === true);
};

/** Every problem in the template; empty when it is valid. */
export async function checkTemplate(template: unknown): Promise<string[]> {
  loaded ??= loadAwsServiceSpec();
  const db = await loaded;
  const problems: string[] = [];
  if (!isObject(template)) return ["the template is not a JSON object"];
  for (const key of Object.keys(template)) if (!SECTIONS.has(key)) problems.push(`unknown top-level section "${key}"`);
  if (template.AWSTemplateFormatVersion !== undefined && template.AWSTemplateFormatVersion !== "2010-09-09")
    problems.push(`AWSTemplateFormatVersion must be "2010-09-09"`);
  const resources = isObject(template.Resources) ? template.Resources : {};
  if (Object.keys(resources).length === 0) problems.push("Resources is missing or empty");
  const parameters = isObject(template.Parameters) ? template.Parameters : {};
  const typeOf = new Map<string, ResourceSpec>();

  const checkValue = (value: unknown, type: PropertyType, path: string, out: string[]): void => {
    if (isIntrinsic(value)) return;
    switch (type.type) {
      case "string":
      case "date-time":
        if (typeof value !== "string") out.push(`${path}: expected a string, got ${JSON.stringify(value)}`);
        return;
      case "number":
      case "integer":
        if (typeof value !== "number" && !(typeof value === "string" && /^-?\d+(\.\d+)?$/.test(value)))
          out.push(`${path}: expected a number, got ${JSON.stringify(value)}`);
        return;
      case "boolean":
        if (typeof value !== "boolean" && value !== "true" && value !== "false")
          out.push(`${path}: expected a boolean, got ${JSON.stringify(value)}`);
        return;
      case "json":
      case "null":
        return;
      case "tag":
        if (!isObject(value) || typeof value.Key !== "string") out.push(`${path}: expected a tag { Key, Value }`);
        return;
      case "array":
        if (!Array.isArray(value)) {
          out.push(`${path}: expected a list, got ${JSON.stringify(value)}`);
          return;
        }
        for (const [i, v] of value.entries()) checkValue(v, type.element as PropertyType, `${path}[${i}]`, out);
        return;
      case "map":
        if (!isObject(value)) {
          out.push(`${path}: expected an object`);
          return;
        }
        for (const [k, v] of Object.entries(value)) checkValue(v, type.element as PropertyType, `${path}.${k}`, out);
        return;
      case "ref": {
        const definition = db.get("typeDefinition", type.reference?.$ref ?? "") as unknown as {
          name: string;
          properties: Record<string, Property>;
        };
        if (!isObject(value)) {
          out.push(`${path}: expected an object (${definition.name}), got ${JSON.stringify(value)}`);
          return;
        }
        checkProperties(value, definition.properties, path, out);
        return;
      }
      case "union": {
        // Many properties allow "json" beside their real type (a leftover of older specs); a value
        // shaped like one of the real types is held to it, so a typo inside it is still found.
        const real = (type.types ?? []).filter((t) => t.type !== "json");
        const attempts = real.map((t) => {
          const sub: string[] = [];
          checkValue(value, t, path, sub);
          return { t, sub };
        });
        if (attempts.some((a) => a.sub.length === 0)) return;
        const shape = Array.isArray(value) ? "list" : isObject(value) ? "object" : "scalar";
        const sameShape = attempts.find(({ t }) =>
          shape === "list" ? t.type === "array" : shape === "object" ? t.type === "ref" || t.type === "map" : false,
        );
        if (sameShape) out.push(...sameShape.sub);
        else if (real.length === (type.types ?? []).length)
          out.push(...(attempts[0]?.sub ?? [`${path}: matches no allowed type`]));
        return;
      }
      default:
        return;
    }
  };

  const checkProperties = (
    value: Record<string, unknown>,
    properties: Record<string, Property>,
    path: string,
    out: string[],
  ): void => {
    for (const [name, v] of Object.entries(value)) {
      const property = properties[name];
      if (!property) {
        out.push(`${path}: unknown property "${name}"`);
        continue;
      }
      checkValue(v, property.type, `${path}.${name}`, out);
    }
    for (const [name, property] of Object.entries(properties))
      if (property.required && !(name in value)) out.push(`${path}: missing required property "${name}"`);
  };

  for (const [id, resource] of Object.entries(resources)) {
    const where = `Resources.${id}`;
    if (!isObject(resource) || typeof resource.Type !== "string") {
      problems.push(`${where}: has no Type`);
      continue;
    }
    const spec = db.lookup("resource", "cloudFormationType", "equals", resource.Type)[0] as unknown as
      | ResourceSpec
      | undefined;
    if (!spec) {
      problems.push(`${where}: unknown resource type "${resource.Type}"`);
      continue;
    }
    typeOf.set(id, spec);
    const properties = isObject(resource.Properties) ? resource.Properties : {};
    checkProperties(properties, spec.properties, `${where} (${resource.Type})`, problems);
    const dependsOn = resource.DependsOn === undefined ? [] : [resource.DependsOn].flat();
    for (const d of dependsOn)
      if (typeof d !== "string" || !(d in resources))
        problems.push(`${where}: DependsOn names "${d}", which is not a resource`);
  }

  const refProblem = (name: string, where: string) => {
    if (!(name in resources) && !(name in parameters) && !PSEUDO.has(name))
      problems.push(`${where}: Ref to "${name}", which is neither a resource, a parameter nor a pseudo parameter`);
  };
  const attributeProblem = (id: string, attribute: string, where: string) => {
    if (!(id in resources)) {
      problems.push(`${where}: Fn::GetAtt names "${id}", which is not a resource`);
      return;
    }
    const spec = typeOf.get(id);
    if (spec && !(attribute in spec.attributes))
      problems.push(`${where}: ${spec.cloudFormationType} "${id}" has no attribute "${attribute}"`);
  };
  const walk = (value: unknown, where: string): void => {
    if (Array.isArray(value)) {
      for (const [i, v] of value.entries()) walk(v, `${where}[${i}]`);
      return;
    }
    if (!isObject(value)) return;
    if ("Ref" in value && typeof value.Ref === "string") refProblem(value.Ref, where);
    if ("Fn::GetAtt" in value) {
      const arg = value["Fn::GetAtt"];
      const [id, attribute] = Array.isArray(arg) ? arg.map(String) : String(arg).split(/\.(.*)/s);
      attributeProblem(String(id), String(attribute), where);
    }
    if ("Fn::Sub" in value) {
      const arg = value["Fn::Sub"];
      const [text, vars] = Array.isArray(arg) ? [String(arg[0]), isObject(arg[1]) ? arg[1] : {}] : [String(arg), {}];
      for (const m of text.matchAll(/\$\{([^}!][^}]*)\}/g)) {
        const name = m[1] as string;
        if (name in vars) continue;
        const dot = name.indexOf(".");
        if (dot < 0) refProblem(name, where);
        else attributeProblem(name.slice(0, dot), name.slice(dot + 1), where);
      }
    }
    for (const [k, v] of Object.entries(value)) walk(v, `${where}.${k}`);
  };
  walk(resources, "Resources");
  walk(template.Outputs, "Outputs");
  walk(template.Conditions, "Conditions");
  return problems;
}
