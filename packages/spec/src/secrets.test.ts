import { describe, expect, it } from "vitest";
import { isSecretVersionId, SECRET_MAX_VALUE_BYTES, secretValueProblem, secretVersionProblem } from "./secrets.js";

describe("secret values", () => {
  it("takes 1 to 65,536 bytes and refuses an empty value or a byte more, naming the limit", () => {
    expect(secretValueProblem("k", new Uint8Array(1))).toBeUndefined();
    expect(secretValueProblem("k", new Uint8Array(SECRET_MAX_VALUE_BYTES))).toBeUndefined();
    expect(secretValueProblem("k", new Uint8Array(SECRET_MAX_VALUE_BYTES + 1))).toBe(
      'secret("k"): the value is 65537 bytes, over the 65536 a secret holds (AWS Secrets Manager\'s limit); keep a large value in a kv store and what protects it (a key) in the secret',
    );
    expect(secretValueProblem("k", new Uint8Array(0))).toBe(
      'secret("k"): the value is empty; a secret holds 1 to 65536 bytes',
    );
  });
});

describe("secret versions", () => {
  it("takes latest and ids of 32 to 64 letters, digits and -, as Secrets Manager's VersionId", () => {
    for (const ok of ["latest", crypto.randomUUID(), "a".repeat(32), "A-9".repeat(21) + "x"]) {
      expect(secretVersionProblem("k", ok), ok).toBeUndefined();
    }
    expect(isSecretVersionId("latest")).toBe(false);
    expect(isSecretVersionId(crypto.randomUUID())).toBe(true);
  });

  it("shows at most 80 characters of a long version it refuses", () => {
    expect(secretVersionProblem("k", "a".repeat(5000))).toBe(
      `secret("k"): version "${"a".repeat(80)}"... (5000 characters) is not a version id; use "latest" for the newest value, or an id put() returned (32 to 64 letters, digits and -)`,
    );
  });

  it("refuses anything else with what to use instead", () => {
    for (const bad of ["", "1", "LATEST", "a".repeat(31), "a".repeat(65), `${"a".repeat(31)}_`, "__proto__", "../x"]) {
      expect(secretVersionProblem("k", bad), bad).toBe(
        `secret("k"): version ${JSON.stringify(bad)} is not a version id; use "latest" for the newest value, or an id put() returned (32 to 64 letters, digits and -)`,
      );
    }
  });
});
