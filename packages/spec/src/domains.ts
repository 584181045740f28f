/**
 * A socket's custom domain on AWS (`websockets.<socket>.domain` in the project file): the name
 * clients connect to (`wss://<name>`), an ACM certificate for it, and optionally the Route 53
 * hosted zone where the build adds the name's alias record. API Gateway serves WebSocket APIs on
 * regional custom domains only, with a certificate of the API's own region.
 */

/** What the project file's `domain:` holds. */
export interface SocketDomain {
  /** The host name clients connect to, such as `ws.example.com`. */
  name: string;
  /** The ARN of an ACM certificate that covers the name, in the stack's region. */
  certificate: string;
  /** A Route 53 hosted zone id for the name; given, the stack adds its alias record there. */
  hostedZone?: string;
}

/** The keys of `domain:`. */
export const DOMAIN_KEYS = ["name", "certificate", "hostedZone"] as const;

/** A DNS label as API Gateway takes one in a custom domain name: letters, digits, inner hyphens. */
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** An ACM certificate's ARN in any partition: `arn:aws:acm:<region>:<account>:certificate/<id>`. */
const CERTIFICATE_ARN = /^arn:aws(?:-[a-z]+)*:acm:([a-z]{2}(?:-[a-z]+)+-\d):(\d{12}):certificate\/[A-Za-z0-9-]{1,128}$/;
/** A Route 53 hosted zone id (`Z` and upper-case letters and digits), as the console shows it. */
const HOSTED_ZONE = /^Z[A-Z0-9]{1,31}$/;

/** Why `name` cannot be a socket's custom domain, or undefined when it can. */
export function domainNameProblem(name: string): string | undefined {
  const fix = "use a host name you own, such as ws.example.com";
  if (name !== name.toLowerCase())
    return `${JSON.stringify(name)} has upper-case letters; DNS names are written in lower case: ${name.toLowerCase()}`;
  if (name.startsWith("*")) return `${JSON.stringify(name)} is a wildcard; a socket needs one name of its own; ${fix}`;
  if (name.endsWith(".")) return `${JSON.stringify(name)} ends with a dot; leave it out: ${name.slice(0, -1)}`;
  if (name.length > 253) return `${JSON.stringify(name)} is ${name.length} characters long; a DNS name has at most 253`;
  const labels = name.split(".");
  if (labels.length < 2) return `${JSON.stringify(name)} is not a full host name; ${fix}`;
  const bad = labels.find((l) => !LABEL.test(l));
  if (bad !== undefined)
    return `${JSON.stringify(name)} is not a host name: ${bad === "" ? "an empty label" : `the label ${JSON.stringify(bad)}`} (labels are 1 to 63 letters, digits and inner hyphens); ${fix}`;
  if (/^\d+$/.test(labels[labels.length - 1] as string))
    return `${JSON.stringify(name)} is an address, not a host name; ${fix}`;
  return undefined;
}

/** Why `arn` cannot be the domain's certificate, or undefined when it can. */
export function certificateProblem(arn: string): string | undefined {
  if (CERTIFICATE_ARN.test(arn)) return undefined;
  return `${JSON.stringify(arn)} is not an ACM certificate's ARN (arn:aws:acm:<region>:<account>:certificate/<id>); request or import one for the domain in the stack's region (AWS Certificate Manager) and give its ARN`;
}

/** The region of a valid certificate ARN. */
export function certificateRegion(arn: string): string | undefined {
  return CERTIFICATE_ARN.exec(arn)?.[1];
}

/** Why `id` cannot be a hosted zone id, or undefined when it can. */
export function hostedZoneProblem(id: string): string | undefined {
  if (HOSTED_ZONE.test(id)) return undefined;
  const bare = id.replace(/^\/?hostedzone\//, "");
  if (bare !== id && HOSTED_ZONE.test(bare)) return `${JSON.stringify(id)}: give the id alone: ${bare}`;
  return `${JSON.stringify(id)} is not a Route 53 hosted zone id (Z and upper-case letters and digits, such as Z0123456789ABCDEFGHIJ); leave hostedZone out to add the DNS record yourself`;
}
