/**
 * Capability-gated tests. A test that needs something this machine lacks is skipped, and the reason is
 * printed so a skip can never pass for a success.
 */
import { describe } from 'vitest';

const announced = new Set<string>();

/** `describe` that runs when `available` is true and otherwise skips, printing `reason` once. */
export function describeIf(available: boolean, reason: string) {
  if (!available && !announced.has(reason)) {
    announced.add(reason);
    console.warn(`[skipped] ${reason}`);
  }
  return describe.skipIf(!available);
}
