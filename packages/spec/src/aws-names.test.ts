import { describe, expect, it } from "vitest";
import { AWS_MAX_API_NAME_LENGTH, awsNameProblems } from "./aws-names.js";

const socket = (name: string) => ({ kind: "websocket", name });
const service = (name: string, file = `services/${name}.ts`) => ({ name, file });

describe("awsNameProblems", () => {
  it("takes an API name of exactly 128 characters and refuses 129, with the socket name that fits", () => {
    const stack = "s".repeat(AWS_MAX_API_NAME_LENGTH - "-socket".length);
    expect(awsNameProblems({ services: [], resources: [socket("socket")] }, stack)).toEqual([]);
    const [problem, ...rest] = awsNameProblems({ services: [], resources: [socket("socket")] }, `${stack}s`, true);
    expect(rest).toEqual([]);
    expect(problem).toContain("129 characters, and API Gateway allows 128");
    expect(problem).toContain("give the socket a name of at most 5 characters, or use a shorter --stack");
  });

  it("asks only for a shorter stack when no socket name would fit", () => {
    const [problem] = awsNameProblems({ services: [], resources: [socket("a")] }, "s".repeat(128));
    expect(problem).toMatch(/; use a shorter project name \(name: in the project file\)$/);
  });

  it("leaves kv stores and secrets alone: CloudFormation names their resources", () => {
    const long = "x".repeat(200);
    expect(awsNameProblems({ services: [], resources: [{ kind: "kv", name: "a" }] }, long)).toEqual([]);
  });

  it("refuses a service name a log group cannot hold, and one over 64 characters, with the file to rename", () => {
    expect(awsNameProblems({ services: [service("chat"), service("a.b_c#1")], resources: [] }, "app")).toEqual([]);
    expect(awsNameProblems({ services: [service("Café Bar", "src/Café Bar.mts")], resources: [] }, "app")).toEqual([
      'service "Café Bar": on AWS its log group is named "/aws/lambda/app/Café Bar", and CloudWatch Logs takes only letters, digits and . - _ # / in one; rename src/Café Bar.mts to src/cafe-bar.mts',
    ]);
    const long = "a".repeat(65);
    const [problem] = awsNameProblems({ services: [service(long)], resources: [] }, "app");
    expect(problem).toContain(`the name is 65 characters, and a deploy to AWS takes at most 64`);
    expect(awsNameProblems({ services: [service("a".repeat(64))], resources: [] }, "app")).toEqual([]);
  });
});
