/**
 * The one retry helper of the mongo layer: poll until a condition holds or a deadline passes.
 * Errors thrown by `fn` count as "not yet" (a member restarting, an election in progress) and the last one is
 * reported when the time is up, so a timeout says what was awaited, for how long, and what was last seen.
 */
import { OperationTimeoutError } from '../errors.ts';

export interface RetryOptions {
  /** Pause between attempts (default 250 ms; never beyond the deadline). */
  intervalMs?: number;
  /** Called after each unsuccessful attempt with a short description of what was seen. */
  onProgress?: (message: string) => void;
  /** Describes a value that did not satisfy the predicate, for progress and the timeout message. */
  describe?: (value: unknown) => string;
}

/**
 * Calls `fn` until `predicate(result)` is true; resolves to that result.
 * @example
 * const hello = await retryUntil(() => admin.command({ hello: 1 }), (h) => h.isWritablePrimary === true, 60_000, 'a writable primary');
 */
export async function retryUntil<T>(
  fn: () => Promise<T>,
  predicate: (value: T) => boolean,
  timeoutMs: number,
  what: string,
  { intervalMs = 250, onProgress, describe }: RetryOptions = {},
): Promise<T> {
  const started = Date.now();
  const deadline = started + timeoutMs;
  let last = 'no attempt finished';
  for (let attempt = 1; ; attempt++) {
    try {
      const value = await fn();
      if (predicate(value)) return value;
      last = describe ? describe(value) : 'condition not met yet';
    } catch (e) {
      last = e instanceof Error ? e.message.split('\n')[0]! : String(e);
    }
    const now = Date.now();
    if (now >= deadline) {
      throw new OperationTimeoutError(
        `timed out after ${((now - started) / 1000).toFixed(1)} s (limit ${(timeoutMs / 1000).toFixed(1)} s, ${attempt} attempts) waiting for ${what}; last: ${last}`,
        { hint: 'the server may still be starting or electing a primary; check its logs, or raise the timeout' },
      );
    }
    onProgress?.(`waiting for ${what} (${((now - started) / 1000).toFixed(0)} s): ${last}`);
    await new Promise((r) => setTimeout(r, Math.min(intervalMs, Math.max(0, deadline - now))));
  }
}
