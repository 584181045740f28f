/**
 * For runners, not services: how a runner gives the SDK its transport to the provider before the
 * service's code loads. `nitric-like run` and the AWS runtime do this in the entry they generate.
 */

export { createPortTransport, type Transport } from "@nitric-like/rpc";
export { serviceLoaded, useTransport } from "./internal/runtime.js";
