import { describe, expect, it } from "vitest";
import { signRequest } from "./signer.js";

// The "get-vanilla", "post-vanilla" and "post-x-www-form-urlencoded" cases of AWS's Signature Version 4 test suite.
const suite = {
  url: new URL("https://example.amazonaws.com/"),
  body: "",
  headers: {},
  service: "service",
  region: "us-east-1",
  accessKeyId: "AKIDEXAMPLE",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
  now: new Date("2015-08-30T12:36:00Z"),
};

describe("signRequest", () => {
  it("signs a GET as AWS's test suite expects", () => {
    expect(signRequest({ ...suite, method: "GET" }).authorization).toBe(
      "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    );
  });

  it("signs a POST as AWS's test suite expects", () => {
    expect(signRequest({ ...suite, method: "POST" }).authorization).toBe(
      "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    );
  });

  it("signs the session token and extra headers too", () => {
    const headers = signRequest({
      ...suite,
      method: "POST",
      headers: { "X-Amz-Invocation-Type": "Event" },
      sessionToken: "token",
    });
    expect(headers["x-amz-security-token"]).toBe("token");
    expect(headers.authorization).toContain(
      "SignedHeaders=host;x-amz-date;x-amz-invocation-type;x-amz-security-token,",
    );
  });

  it("signs a body as AWS's test suite expects, given as text or as bytes", () => {
    const form = {
      ...suite,
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
    };
    const expected =
      "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a";
    expect(signRequest({ ...form, body: "Param1=value1" }).authorization).toBe(expected);
    expect(signRequest({ ...form, body: new TextEncoder().encode("Param1=value1") }).authorization).toBe(expected);
  });

  it("signs bytes that are not UTF-8 as they are (a binary frame for PostToConnection)", () => {
    // Decoded as UTF-8, both would be U+FFFD and sign alike.
    const a = signRequest({ ...suite, method: "POST", body: new Uint8Array([0xff]) }).authorization;
    const b = signRequest({ ...suite, method: "POST", body: new Uint8Array([0xfe]) }).authorization;
    expect(a).not.toBe(b);
  });
});
