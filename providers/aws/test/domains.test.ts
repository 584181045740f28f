// The name rules up checks a custom domain's certificate and hosted zone by.
import { describe, expect, it } from "vitest";
import { certificateCovers, zoneHolds } from "../src/deploy/domains.js";

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
});
