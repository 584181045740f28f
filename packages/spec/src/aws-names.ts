/**
 * The names a deploy to AWS makes of the stack, socket and service names, checked against AWS's
 * limits before anything is built or uploaded: otherwise CloudFormation refuses the resource
 * halfway through `up` and rolls the stack back. The other names are CloudFormation's own
 * (functions, roles, tables: it shortens what it generates to fit) or short and fixed (the stage).
 */
import { suggestName } from "./names.js";

/** API Gateway's longest API name (`CreateApi`'s Name). */
export const AWS_MAX_API_NAME_LENGTH = 128;
/**
 * The longest service name a deploy takes: CloudFormation's logical ids (at most 255 characters)
 * are made of it and a socket's name, and a function's description (at most 256) of it and the
 * project's name.
 */
export const AWS_MAX_SERVICE_NAME_LENGTH = 64;
/** What a CloudWatch Logs log group name may hold; a service's is `/aws/lambda/<stack>/<service>`. */
const LOG_GROUP_NAME = /^[.\-_/#A-Za-z0-9]+$/;

/** The name of a socket's API Gateway API (the template's `${AWS::StackName}-<socket>`). */
export function awsApiName(stack: string, socket: string): string {
  return `${stack}-${socket}`;
}

/** The name of a service's log group. */
export function awsLogGroupName(stack: string, service: string): string {
  return `/aws/lambda/${stack}/${service}`;
}

/**
 * Why the names a deploy of `spec` as stack `stack` makes are not all names AWS takes, one
 * sentence each with the fix; empty when they are. `stackGiven` says the stack name came from
 * `--stack` (else it is the project's name, which the fix then names).
 */
export function awsNameProblems(
  spec: { services: readonly { name: string; file: string }[]; resources: readonly { kind: string; name: string }[] },
  stack: string,
  stackGiven = false,
): string[] {
  const problems: string[] = [];
  const shorterStack = stackGiven ? "a shorter --stack" : "a shorter project name (name: in the project file)";
  for (const socket of spec.resources) {
    if (socket.kind !== "websocket") continue;
    const api = awsApiName(stack, socket.name);
    if (api.length <= AWS_MAX_API_NAME_LENGTH) continue;
    const room = AWS_MAX_API_NAME_LENGTH - stack.length - 1;
    const fix =
      room > 0 ? `give the socket a name of at most ${room} characters, or use ${shorterStack}` : `use ${shorterStack}`;
    problems.push(
      `websocket ${socket.name}: on AWS its API is named ${JSON.stringify(api)}, ${api.length} characters, and API Gateway allows ${AWS_MAX_API_NAME_LENGTH}; ${fix}`,
    );
  }
  for (const service of spec.services) {
    const dir = service.file.slice(0, service.file.lastIndexOf("/") + 1);
    const ext = service.file.slice(dir.length + service.name.length);
    const rename = (name: string) => `rename ${service.file} to ${dir}${name}${ext}`;
    if (!LOG_GROUP_NAME.test(service.name)) {
      problems.push(
        `service ${JSON.stringify(service.name)}: on AWS its log group is named ${JSON.stringify(awsLogGroupName(stack, service.name))}, and CloudWatch Logs takes only letters, digits and . - _ # / in one; ${rename(suggestName(service.name))}`,
      );
    } else if (service.name.length > AWS_MAX_SERVICE_NAME_LENGTH) {
      problems.push(
        `service ${JSON.stringify(service.name)}: the name is ${service.name.length} characters, and a deploy to AWS takes at most ${AWS_MAX_SERVICE_NAME_LENGTH} (CloudFormation's logical ids and a function's description are made of it); ${rename(suggestName(service.name))}`,
      );
    }
  }
  return problems;
}
