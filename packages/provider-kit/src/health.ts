/**
 * The standard gRPC health check on every endpoint: SERVING for the endpoint as a whole and for
 * each contract service it serves, NOT_FOUND (as the protocol says) for any other name.
 */

import { type Health, HealthCheckResponse_ServingStatus } from "@nitric-like/contracts/health";
import { Code, RpcError, type ServiceImpl } from "@nitric-like/rpc";

/** Builds the Health implementation for an endpoint serving the services named in `served`. */
export function healthService(served: ReadonlySet<string>): ServiceImpl<typeof Health> {
  return {
    check(call, callback) {
      const name = call.request.service;
      if (name !== "" && !served.has(name)) {
        callback(
          new RpcError(
            Code.NOT_FOUND,
            `health: service ${JSON.stringify(name)} is not served here; ask about one of ${[...served].join(", ")} or ""`,
          ),
        );
        return;
      }
      callback(null, { status: HealthCheckResponse_ServingStatus.SERVING });
    },
  };
}
