// Where the runtime's AWS calls go and with what, from the environment, as the AWS SDK decides it.
import { describe, expect, it } from "vitest";
import { credentialsOf, endpointOf, regionOf } from "../src/aws/request.js";

describe("endpointOf", () => {
  it("prefers AWS_ENDPOINT_URL_<SERVICE>, then AWS_ENDPOINT_URL, then AWS's own endpoint for the region", () => {
    const region = { AWS_REGION: "eu-west-1" };
    expect(
      endpointOf(
        { ...region, AWS_ENDPOINT_URL_DYNAMODB: "http://127.0.0.1:8000", AWS_ENDPOINT_URL: "http://127.0.0.1:4566" },
        "DYNAMODB",
        "dynamodb",
      ),
    ).toBe("http://127.0.0.1:8000");
    expect(endpointOf({ ...region, AWS_ENDPOINT_URL: "http://127.0.0.1:4566" }, "DYNAMODB", "dynamodb")).toBe(
      "http://127.0.0.1:4566",
    );
    expect(endpointOf({ ...region, AWS_ENDPOINT_URL_LAMBDA: "http://x" }, "DYNAMODB", "dynamodb")).toBe(
      "https://dynamodb.eu-west-1.amazonaws.com",
    );
    expect(endpointOf({ AWS_REGION: "cn-north-1" }, "DYNAMODB", "dynamodb")).toBe(
      "https://dynamodb.cn-north-1.amazonaws.com.cn",
    );
  });

  it("ignores configured endpoints when AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true", () => {
    expect(
      endpointOf(
        {
          AWS_REGION: "us-east-1",
          AWS_ENDPOINT_URL: "http://127.0.0.1:4566",
          AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: "true",
        },
        "LAMBDA",
        "lambda",
      ),
    ).toBe("https://lambda.us-east-1.amazonaws.com");
  });
});

describe("regionOf and credentialsOf", () => {
  it("read Lambda's variables, the session token when there is one", () => {
    expect(regionOf({ AWS_DEFAULT_REGION: "us-west-2" })).toBe("us-west-2");
    expect(credentialsOf({ AWS_ACCESS_KEY_ID: "a", AWS_SECRET_ACCESS_KEY: "b" })).toEqual({
      accessKeyId: "a",
      secretAccessKey: "b",
    });
    expect(credentialsOf({ AWS_ACCESS_KEY_ID: "a", AWS_SECRET_ACCESS_KEY: "b", AWS_SESSION_TOKEN: "t" })).toEqual({
      accessKeyId: "a",
      secretAccessKey: "b",
      sessionToken: "t",
    });
  });

  it("say what to set when a variable is missing", () => {
    expect(() => regionOf({})).toThrow(/AWS_REGION is not set/);
    expect(() => credentialsOf({ AWS_ACCESS_KEY_ID: "a" })).toThrow(
      /AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set/,
    );
  });
});
