import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  connectionStateProblem,
  MAX_CONNECTION_STATE_BYTES,
  ROOM_NAME_PATTERN,
  roomNameProblem,
  tooManyRoomsProblem,
} from "./rooms.js";

describe("room names", () => {
  it("accepts 1-128 characters of A-Z a-z 0-9 _ - . : @, Object.prototype's names included", () => {
    for (const name of [
      "a",
      "lobby",
      "team:blue",
      "user@example.com",
      "v1.2_x-y",
      "__proto__",
      "constructor",
      "r".repeat(128),
    ])
      expect(roomNameProblem("w", name)).toBeUndefined();
  });

  it("refuses every other string with a message that says the rule or the limit", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (name) => {
        const problem = roomNameProblem('websocket "s"', name);
        expect(problem === undefined).toBe(ROOM_NAME_PATTERN.test(name));
        if (problem)
          expect(problem).toMatch(
            /^websocket "s": (a room name is empty|room name .* over the limit of 128|invalid room name .*; use 1-128 characters)/,
          );
      }),
    );
    expect(roomNameProblem("w", "a#b")).toBe(
      'w: invalid room name "a#b"; use 1-128 characters of A-Z a-z 0-9 _ - . : @',
    );
    expect(roomNameProblem("w", 7)).toMatch(/must be a string, got number/);
    expect(tooManyRoomsProblem("w", "c1")).toBe(
      'w: connection "c1" is in 100 rooms, the most allowed; leave one first',
    );
  });
});

describe("connection state", () => {
  it("takes JSON up to 16,384 bytes of UTF-8 and refuses a byte more, naming the limit", () => {
    const fits = JSON.stringify("é".repeat((MAX_CONNECTION_STATE_BYTES - 2) / 2));
    expect(new TextEncoder().encode(fits).byteLength).toBe(MAX_CONNECTION_STATE_BYTES);
    expect(connectionStateProblem("w", fits)).toBeUndefined();
    expect(connectionStateProblem("w", `${fits} `)).toBe(
      "w: a connection's state is at most 16384 bytes of JSON (16 KB), got 16385; keep less in it, and the rest in kv",
    );
    expect(connectionStateProblem("w", "")).toBeUndefined();
    expect(connectionStateProblem("w", "{nope")).toMatch(/must be JSON/);
  });
});
