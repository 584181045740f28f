// What up reads from a template's custom domains, and the name rules it checks a certificate and a
// hosted zone by.
import { describe, expect, it } from "vitest";
import { buildTemplate } from "../src/build/template.js";
import { certificateCovers, templateDomains, zoneHolds } from "../src/deploy/domains.js";

describe("custom domain checks", () => {
  it("cover a name by the certificate's own name or a wildcard of exactly one label, any case", () => {
    expect(certificateCovers("ws.example.com", "ws.example.com")).toBe(true);
    expect(certificateCovers("WS.Example.com.", "ws.example.com")).toBe(true);
    expect(certificateCovers("*.example.com", "ws.example.com")).toBe(true);
    expect(certificateCovers("*.example.com", "example.com")).toBe(false);
    expect(certificateCovers("*.example.com", "a.ws.example.com")).toBe(false);
    expect(certificateCovers("*.ws.example.com", "ws.example.com")).toBe(false);
    expect(certificateCovers("example.com", "ws.example.com")).toBe(false);
    expect(certificateCovers("*.xample.com", "ws.example.com")).toBe(false);
  });

  it("let a zone hold its own name and the names under it, not a name that only ends alike", () => {
    expect(zoneHolds("example.com.", "ws.example.com")).toBe(true);
    expect(zoneHolds("example.com", "example.com")).toBe(true);
    expect(zoneHolds("Example.COM.", "a.b.example.com")).toBe(true);
    expect(zoneHolds("example.com.", "ws.badexample.com")).toBe(false);
    expect(zoneHolds("ws.example.com.", "example.com")).toBe(false);
  });

  it("find each domain of a built template with its certificate and its record's zone", () => {
    const template = buildTemplate({
      spec: {
        name: "app",
        services: [{ name: "svc", file: "services/svc.ts" }],
        resources: ["a", "b"].map((name) => ({
          kind: "websocket" as const,
          name,
          declaredBy: ["svc"],
          handlers: { connect: "svc", disconnect: "svc", message: "svc" },
        })),
        policies: [],
      },
      artifactKeys: { svc: "k" },
      domains: {
        a: { name: "a.example.com", certificate: "arn:aws:acm:us-east-1:123456789012:certificate/a" },
        b: { name: "b.example.com", certificate: "arn:aws:acm:us-east-1:123456789012:certificate/b", hostedZone: "Z1" },
      },
    });
    expect(templateDomains(template)).toEqual([
      { name: "a.example.com", certificate: "arn:aws:acm:us-east-1:123456789012:certificate/a" },
      { name: "b.example.com", certificate: "arn:aws:acm:us-east-1:123456789012:certificate/b", hostedZone: "Z1" },
    ]);
    expect(templateDomains({ Resources: {} })).toEqual([]);
  });
});
