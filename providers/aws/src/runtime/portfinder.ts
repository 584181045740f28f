/**
 * What functions get instead of the `portfinder` package, which the published @nitric/sdk imports
 * (for its http() resource) and which would bring `async`, `debug` and `ms` along: ~34 KB of a
 * bundle whose limit is 1 MB. Its two entry points, done the way the OS does it: listen on port 0
 * of the host asked for and hand back the port it gave.
 */
import { createServer } from "node:net";

interface PortOptions {
  host?: string;
  port?: number;
}

type Callback = (error: Error | null, port: number) => void;

/** A free port, from `options.port` up when one is asked for (as portfinder), else any. */
export function getPortPromise(options: PortOptions = {}): Promise<number> {
  const host = options.host ?? "127.0.0.1";
  const tryPort = (port: number): Promise<number> =>
    new Promise((resolve, reject) => {
      const server = createServer();
      server.once("error", (error: NodeJS.ErrnoException) => {
        if (error.code === "EADDRINUSE" && port !== 0 && port < 65535) resolve(tryPort(port + 1));
        else reject(error);
      });
      server.listen(port, host, () => {
        const address = server.address();
        server.close(() => resolve(typeof address === "object" && address ? address.port : port));
      });
    });
  return tryPort(options.port ?? 0);
}

/** portfinder's callback form: `getPort(callback)` or `getPort(options, callback)`. */
export function getPort(options: PortOptions | Callback, callback?: Callback): void {
  const [opts, cb] = typeof options === "function" ? [{}, options] : [options, callback];
  getPortPromise(opts).then(
    (port) => cb?.(null, port),
    (error: Error) => cb?.(error, 0),
  );
}

export default { getPort, getPortPromise };
