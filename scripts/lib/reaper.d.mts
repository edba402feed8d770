// Types of scripts/lib/reaper.mjs for the TypeScript tests.
import type { ChildProcess } from 'node:child_process';

export interface ReaperOptions {
  /** The work directory: its removal means a normal teardown happened; what names it is stopped otherwise. */
  dir: string;
  /** Processes to stop first (SIGTERM, then SIGKILL after 20 s). */
  pids?: number[];
  /** The process whose end without a teardown triggers the clean-up (default: the caller). */
  watch?: number;
  /** Prefix of its stderr lines. */
  label?: string;
  /** Also stop processes whose environment (not only command line) names `dir`; other watchdogs excepted. */
  environment?: boolean;
  /** More directories to remove with `dir`. */
  alsoRemove?: string[];
}

export function startReaper(options: ReaperOptions): ChildProcess;
export function processesNaming(dir: string, options?: { environment?: boolean }): number[];
export function reap(options: Omit<ReaperOptions, 'watch'> & { quiet?: boolean }): Promise<void>;
