// Progress for slow steps: zx's spinner on a terminal; one plain line where stderr is a pipe or a CI log, so logs
// stay readable (zx already skips the spinner when CI is set, but not when stderr is merely redirected).
import { spinner } from 'zx';

/** Runs `fn` behind a spinner titled `title` on a terminal, after a plain `title` line elsewhere. */
export async function withSpinner(title, fn, { stream = process.stderr } = {}) {
  if (stream.isTTY && !process.env.CI) return spinner(title, fn);
  stream.write(`${title}\n`);
  return fn();
}
