/**
 * Streams standing by: a stream of a service displaced by a newer registration of the same
 * handler or authorizer (a second copy of the service on its endpoint) is kept, by key, and
 * takes over again when the newer one ends (see HandlerRegistry.register, AuthorizerRegistry.register).
 */

/**
 * Most streams that may stand by for one key (a socket's event handler or route, or its
 * authorizer); past it the oldest is ended with OK.
 */
export const MAX_STANDBY = 8;

/** Takes `service`'s streams out of the standby lists of `standby`, and gives them. */
export function takeStandby<S extends { readonly service: string }>(standby: Map<string, S[]>, service: string): S[] {
  const taken: S[] = [];
  for (const [key, list] of [...standby]) {
    const keep = list.filter((s) => s.service !== service);
    if (keep.length === list.length) continue;
    for (const s of list) if (s.service === service) taken.push(s);
    if (keep.length === 0) standby.delete(key);
    else standby.set(key, keep);
  }
  return taken;
}
