/** What every CLI command gets: its arguments and the process streams (replaceable in tests). */
export interface CliIO {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  stdin: NodeJS.ReadableStream;
  env: NodeJS.ProcessEnv;
}

export interface Command {
  /** One line shown by `mongo-capsule --help`. */
  summary: string;
  /** Full usage text shown by `mongo-capsule <command> --help`. */
  usage: string;
  /** Runs the command; returns the exit code. Throws MongoCapsuleError for expected failures. */
  run(args: string[], io: CliIO): Promise<number>;
}
