// Our SigV4 signer against the AWS SDK's own, `@smithy/signature-v4` hashing with the pure-JS
// SHA-256 of `@smithy/core/checksum` (ours hashes with node:crypto): thousands of random requests,
// the same Authorization header expected to the character.
import { Sha256Js } from "@smithy/core/checksum";
import { HttpRequest } from "@smithy/core/protocols";
import { SignatureV4 } from "@smithy/signature-v4";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { signRequest } from "../src/aws/signer.js";

/** Characters a path, a query or a secret may hold that encoding gets wrong most often. */
const ODD = [..." !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~%é€😀\u0000\u00a0+=&", "%2F", "%20", "%zz", "..", "."];
const oddText = fc
  .array(fc.oneof(fc.constantFrom(...ODD), fc.string({ unit: "binary", maxLength: 4 }), fc.string({ maxLength: 6 })), {
    maxLength: 5,
  })
  .map((parts) => parts.join(""));

/** A header name: token characters, in any casing. */
const tokenChar = fc.constantFrom(..."!#$%&'*+.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-");
const headerName = fc.oneof(
  fc.string({ unit: tokenChar, minLength: 1, maxLength: 12 }),
  fc.constantFrom(
    "Content-Type",
    "X-Amz-Target",
    "x-amz-invocation-type",
    "User-Agent",
    "X-Amzn-Trace-Id",
    "Proxy-Authorization",
    "Sec-Fetch-Mode",
    "Expect",
    "Transfer-Encoding",
    "Cache-Control",
    "Date",
    "X-Amz-Date",
    "Authorization",
    "x-amz-security-token",
    "X-Amz-Content-Sha256",
  ),
);
/** A header value: visible ASCII, spaces and tabs anywhere (leading, trailing, in runs). */
const headerValue = fc
  .array(fc.oneof(fc.constantFrom(" ", "  ", "\t", " \t "), fc.string({ unit: "grapheme-ascii", maxLength: 8 })), {
    maxLength: 6,
  })
  .map((parts) => parts.join("").replace(/[^\x20-\x7e\t]/g, "x"));

const request = fc.record({
  method: fc.oneof(
    fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"),
    fc.string({ unit: fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZ"), minLength: 1, maxLength: 8 }),
  ),
  host: fc.oneof(
    fc.constantFrom("dynamodb.eu-west-1.amazonaws.com", "abc123.execute-api.us-east-1.amazonaws.com", "127.0.0.1:8000"),
    fc.domain(),
  ),
  segments: fc.array(fc.oneof(oddText, fc.constant(""), fc.constantFrom(".", "..", "@connections")), {
    maxLength: 6,
  }),
  trailingSlash: fc.boolean(),
  query: fc.array(fc.tuple(fc.oneof(oddText, fc.constantFrom("a", "A", "b", "X-Amz-Signature", "")), oddText), {
    maxLength: 6,
  }),
  /** Some keys appear again, with another or the same value. */
  repeats: fc.array(fc.tuple(fc.nat(), oddText), { maxLength: 3 }),
  headers: fc.uniqueArray(fc.tuple(headerName, headerValue), {
    maxLength: 8,
    selector: ([name]) => name.toLowerCase(),
  }),
  body: fc.oneof(
    fc.constant(""),
    fc.string({ unit: "binary", maxLength: 64 }),
    fc.uint8Array({ maxLength: 64 }),
    fc.string({ unit: "grapheme", maxLength: 40 }),
  ),
  region: fc.oneof(
    fc.constantFrom("us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1", "ap-southeast-2"),
    fc.string({ unit: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789-"), minLength: 1, maxLength: 16 }),
  ),
  service: fc.oneof(
    fc.constantFrom("dynamodb", "execute-api", "lambda", "sts", "service"),
    fc.string({ unit: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789-."), minLength: 1, maxLength: 16 }),
  ),
  accessKeyId: fc.string({
    unit: fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"),
    minLength: 16,
    maxLength: 20,
  }),
  secretAccessKey: fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 40 }),
  sessionToken: fc.option(fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 60 }), { nil: undefined }),
  contentSha256: fc.boolean(),
  now: fc.date({ min: new Date("2000-01-01T00:00:00Z"), max: new Date("2099-12-31T23:59:59Z"), noInvalidDate: true }),
});

type Generated = typeof request extends fc.Arbitrary<infer T> ? T : never;

/** The URL both signers see: the path and query as a client would send them. */
function urlOf(r: Generated): { url: URL; pairs: [string, string][] } {
  const url = new URL(`https://${r.host}`);
  url.pathname = `/${r.segments.join("/")}${r.trailingSlash ? "/" : ""}`;
  const pairs = [...r.query];
  for (const [i, value] of r.repeats)
    if (r.query.length > 0) pairs.push([r.query[i % r.query.length]?.[0] ?? "", value]);
  const params = new URLSearchParams();
  for (const [k, v] of pairs) params.append(k, v);
  url.search = params.toString();
  return { url, pairs: [...new URLSearchParams(url.search)] };
}

async function sdkAuthorization(r: Generated, url: URL, pairs: [string, string][]): Promise<string> {
  // The SDK's query: a key once as a string, a repeated key as an array of its values.
  const query: Record<string, string | string[]> = Object.create(null);
  for (const [k, v] of pairs) {
    const had = query[k];
    query[k] = had === undefined ? v : Array.isArray(had) ? [...had, v] : [had, v];
  }
  const signer = new SignatureV4({
    service: r.service,
    region: r.region,
    sha256: Sha256Js,
    credentials: {
      accessKeyId: r.accessKeyId,
      secretAccessKey: r.secretAccessKey,
      ...(r.sessionToken ? { sessionToken: r.sessionToken } : {}),
    },
    // The SDK's clients send the body's hash as x-amz-content-sha256 (applyChecksum); both ways checked.
    applyChecksum: r.contentSha256,
  });
  const signed = await signer.sign(
    new HttpRequest({
      method: r.method,
      protocol: url.protocol,
      hostname: url.hostname,
      ...(url.port ? { port: Number(url.port) } : {}),
      path: url.pathname,
      query,
      headers: { ...Object.fromEntries(r.headers), host: url.host },
      body: r.body,
    }),
    { signingDate: r.now },
  );
  return String(signed.headers.authorization);
}

function ourAuthorization(r: Generated, url: URL): string {
  return String(
    signRequest({
      method: r.method,
      url,
      body: r.body,
      headers: Object.fromEntries(r.headers),
      service: r.service,
      region: r.region,
      accessKeyId: r.accessKeyId,
      secretAccessKey: r.secretAccessKey,
      ...(r.sessionToken ? { sessionToken: r.sessionToken } : {}),
      now: r.now,
      contentSha256: r.contentSha256,
    }).authorization,
  );
}

describe("signRequest against @smithy/signature-v4", () => {
  it("signs 3,000 random requests exactly as the SDK's signer does", async () => {
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const { url, pairs } = urlOf(r);
        expect(ourAuthorization(r, url)).toBe(await sdkAuthorization(r, url, pairs));
      }),
      { numRuns: 3000 },
    );
  });

  it("is checked on requests that exercise each rule (the generator reaches them)", async () => {
    // A failing signer must fail here too: these requests differ from the canonical form in every way.
    const r: Generated = {
      method: "POST",
      host: "dynamodb.eu-west-1.amazonaws.com",
      segments: ["", "a b", ".", "..", "x%2Fy", "é😀", "@connections", "!'()*"],
      trailingSlash: true,
      query: [
        ["b", "2"],
        ["a", "z"],
        ["a", ""],
        ["k y", "v+w"],
        ["X-Amz-Signature", "dropped"],
      ],
      repeats: [[1, "a"]],
      headers: [
        ["X-Odd-Case", "  two   spaces\tand tab  "],
        ["User-Agent", "not signed"],
        ["Sec-Fetch-Mode", "not signed"],
        ["Date", "dropped"],
      ],
      body: new Uint8Array([0xff, 0x00, 0xfe]),
      region: "eu-west-1",
      service: "dynamodb",
      accessKeyId: "AKIDEXAMPLE",
      secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
      sessionToken: "token",
      contentSha256: true,
      now: new Date("2015-08-30T12:36:00Z"),
    };
    const { url, pairs } = urlOf(r);
    const ours = ourAuthorization(r, url);
    expect(ours).toContain("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token;x-odd-case,");
    expect(ours).toBe(await sdkAuthorization(r, url, pairs));
  });

  it("refuses one header given twice under two casings", () => {
    expect(() =>
      signRequest({
        method: "GET",
        url: new URL("https://example.amazonaws.com/"),
        body: "",
        headers: { "X-A": "1", "x-a": "2" },
        service: "s",
        region: "r",
        accessKeyId: "a",
        secretAccessKey: "b",
      }),
    ).toThrow(/header "x-a" is given twice/);
  });
});
