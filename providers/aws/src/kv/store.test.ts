import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { AwsError } from "../aws/request.js";
import { managementError } from "../websocket/gateway.js";
import { dynamoError } from "./store.js";

// Errors as our AWS clients throw them (name, message, status), turned into statuses.
const awsError = (name: string, message: string, statusCode = 400) => new AwsError(name, message, statusCode);

describe("dynamoError", () => {
  it("turns AccessDenied into PERMISSION_DENIED naming the missing .allow()", () => {
    const error = dynamoError(
      "items",
      "stack-ItemsKvTable-1",
      "set",
      awsError("AccessDeniedException", "User is not authorized to perform: dynamodb:PutItem"),
    ) as Error & { code: number };
    expect(error.code).toBe(status.PERMISSION_DENIED);
    expect(error.message).toBe(
      'kv("items"): AWS refused to set table "stack-ItemsKvTable-1" (User is not authorized to perform: dynamodb:PutItem); add .allow("set") to kv("items") in this service and deploy again',
    );
  });

  it("turns a missing table into NOT_FOUND saying to deploy again", () => {
    const error = dynamoError("items", "t", "get", awsError("ResourceNotFoundException", "no table")) as Error & {
      code: number;
    };
    expect(error.code).toBe(status.NOT_FOUND);
    expect(error.message).toContain("deploy the stack again");
  });

  it("turns throttling into RESOURCE_EXHAUSTED", () => {
    const error = dynamoError("items", "t", "get", awsError("ThrottlingException", "slow down")) as Error & {
      code: number;
    };
    expect(error.code).toBe(status.RESOURCE_EXHAUSTED);
  });
});

describe("managementError", () => {
  it("turns a 403 into PERMISSION_DENIED saying to declare the socket", () => {
    const error = managementError(
      "lab",
      "send to connection x",
      awsError("ForbiddenException", "Forbidden", 403),
    ) as Error & {
      code: number;
    };
    expect(error.code).toBe(status.PERMISSION_DENIED);
    expect(error.message).toContain('declare websocket("lab") in this service');
  });

  it("turns a 413 into INVALID_ARGUMENT naming API Gateway's limit", () => {
    const error = managementError("lab", "send", awsError("PayloadTooLargeException", "too big", 413)) as Error & {
      code: number;
    };
    expect(error.code).toBe(status.INVALID_ARGUMENT);
    expect(error.message).toContain("at most 128 KB");
  });
});
