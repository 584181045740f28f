import { create } from "@bufbuild/protobuf";
import { HandleAuthorizationsRequestSchema } from "@nitric-like/contracts/authorize";
import { describe, expect, it } from "vitest";
import { AuthorizerRegistry, checkDecision, offeredProtocols } from "./authorizer.js";

const allow = (identityJson: string, protocol = "") =>
  create(HandleAuthorizationsRequestSchema, {
    id: "1",
    content: { case: "response", value: { result: { case: "allow", value: { identityJson, protocol } } } },
  });
const deny = (status: number, reason: string) =>
  create(HandleAuthorizationsRequestSchema, {
    id: "1",
    content: { case: "response", value: { result: { case: "deny", value: { status, reason } } } },
  });

describe("an authorizer's answer, checked by the provider whatever SDK sent it", () => {
  it("passes an identity of up to 8192 bytes and refuses a larger one with 500, saying why", () => {
    const fits = JSON.stringify("x".repeat(8190));
    expect(checkDecision("s", { protocols: [] }, allow(fits))).toEqual({
      allow: true,
      identityJson: fits,
      protocol: "",
    });
    const over = JSON.stringify("x".repeat(8191));
    expect(checkDecision("s", { protocols: [] }, allow(over))).toEqual({
      allow: false,
      status: 500,
      reason: expect.stringContaining("the authorizer's identity is 8193 bytes, over 8192"),
    });
  });

  it("refuses an identity that is not JSON, and a subprotocol the client did not offer", () => {
    expect(checkDecision("s", { protocols: [] }, allow("{nope"))).toMatchObject({ allow: false, status: 500 });
    expect(checkDecision("s", { protocols: ["a"] }, allow("1", "b"))).toMatchObject({
      allow: false,
      status: 500,
      reason: expect.stringContaining('subprotocol "b", which the client did not offer'),
    });
    expect(checkDecision("s", { protocols: ["a", "b"] }, allow("1", "b"))).toEqual({
      allow: true,
      identityJson: "1",
      protocol: "b",
    });
  });

  it("keeps 401, 403 and 500 refusals, makes any other status 403, and gives a blank reason one", () => {
    expect(checkDecision("s", { protocols: [] }, deny(401, "who?"))).toEqual({
      allow: false,
      status: 401,
      reason: "who?",
    });
    expect(checkDecision("s", { protocols: [] }, deny(500, "failed"))).toMatchObject({ status: 500 });
    expect(checkDecision("s", { protocols: [] }, deny(200, ""))).toEqual({
      allow: false,
      status: 403,
      reason: 'connection refused by the authorizer of websocket "s"',
    });
  });

  it("reads the offered subprotocols from one header line or several", () => {
    expect(offeredProtocols(undefined)).toEqual([]);
    expect(offeredProtocols("token.abc, chat")).toEqual(["token.abc", "chat"]);
    expect(offeredProtocols(["token.abc", " chat ,v2"])).toEqual(["token.abc", "chat", "v2"]);
  });
});

describe("a connect that waits for an authorizer that does not come", () => {
  const input = { socketName: "s", protocols: [] } as unknown as Parameters<AuthorizerRegistry["authorize"]>[0];

  it("is refused with 503 saying the authorizer is not running, or naming the service run removed and why", async () => {
    const registry = new AuthorizerRegistry(100, 20);
    registry.expect("s", "gate");
    expect(await registry.authorize(input)).toEqual({
      allow: false,
      status: 503,
      reason: 'websocket "s": its authorizer (service "gate") is not running; connect again once it is',
    });
    registry.serviceRemoved("gate", "was removed: services/gate.ts is gone");
    expect(await registry.authorize(input)).toEqual({
      allow: false,
      status: 503,
      reason:
        'websocket "s": its authorizer\'s service "gate" was removed: services/gate.ts is gone, and no other service authorizes it; give websocket("s", { authorize }) in a service',
    });
  });

  it("is refused at once, saying it waits but not its failure, while the authorizer's service waits for a file change, and waits again once it starts", async () => {
    // A 10 s wait: a refusal that comes at once is not the wait running out.
    const registry = new AuthorizerRegistry(100, 10_000);
    registry.expect("s", "gate");
    const waited = registry.authorize(input);
    registry.serviceWaiting("gate", true);
    const refusal = {
      allow: false,
      status: 503,
      reason:
        'websocket "s": its authorizer\'s service "gate" is not running until one of its files changes (run\'s output says why)',
      serviceWaiting: true,
    };
    const asked = Date.now();
    expect(await waited).toEqual(refusal);
    expect(await registry.authorize(input)).toEqual(refusal);
    expect(Date.now() - asked).toBeLessThan(1000);
    registry.serviceWaiting("gate", undefined);
    const again = new AbortController();
    const pending = registry.authorize(input, again.signal);
    let settled = false;
    void pending.then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(settled).toBe(false);
    again.abort();
    await pending;
  });
});
