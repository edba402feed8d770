/**
 * MongoDB connection strings built with WHATWG `URL` (credentials percent-encoded, options through
 * `URLSearchParams`), never by concatenating user input.
 *
 * `URL` holds exactly one host, while a replica-set seed list has several: the string is built on the first
 * host and the others are inserted right after it, each validated as `host:port` by `URL` itself.
 */
import { InvalidArgumentError } from '../src/errors.ts';

export interface ConnectionStringOptions {
  /** `host:port` seed list. */
  hosts: readonly string[];
  username?: string;
  password?: string;
  /** URI options, in order (e.g. `replicaSet`, `directConnection`, `authSource`). */
  options?: Readonly<Record<string, string>>;
}

function checkHost(h: string): string {
  let u: URL;
  try {
    u = new URL(`mongodb://${h}`);
  } catch {
    throw new InvalidArgumentError(`connection string: invalid host ${JSON.stringify(h)}`);
  }
  // The URL must have parsed exactly a host and a port, nothing else.
  if (u.host !== h || u.port === '' || u.username !== '' || u.pathname !== '' || u.search !== '') {
    throw new InvalidArgumentError(`connection string: host must look like name:port, got ${JSON.stringify(h)}`);
  }
  return u.host;
}

/**
 * @example
 * buildConnectionString({ hosts: ['127.0.0.1:27017'], username: 'root', password: 'p', options: { directConnection: 'true', authSource: 'admin' } })
 * // 'mongodb://root:p@127.0.0.1:27017/?directConnection=true&authSource=admin'
 */
export function buildConnectionString({ hosts, username, password, options = {} }: ConnectionStringOptions): string {
  if (hosts.length === 0) throw new InvalidArgumentError('connection string: at least one host is needed');
  if (options.directConnection === 'true' && hosts.length > 1) {
    // The driver would refuse it; worse, a client that accepted it would talk to one arbitrary member.
    throw new InvalidArgumentError('connection string: directConnection=true allows exactly one host');
  }
  if (password !== undefined && username === undefined) throw new InvalidArgumentError('connection string: a password needs a username');
  const [first, ...rest] = hosts.map(checkHost) as [string, ...string[]];
  const url = new URL(`mongodb://${first}/`);
  if (username !== undefined) {
    // The URL setters leave '%' alone (it starts an escape), so a password holding '%' would come out
    // ambiguous: encode first; the setters keep encodeURIComponent's output as it is.
    url.username = encodeURIComponent(username);
    if (password !== undefined) url.password = encodeURIComponent(password);
  }
  for (const [k, v] of Object.entries(options)) url.searchParams.append(k, v);
  const href = url.href;
  if (rest.length === 0) return href;
  const authorityStart = href.indexOf('//') + 2;
  const at = href.indexOf('@', authorityStart);
  const hostStart = at === -1 ? authorityStart : at + 1;
  const hostEnd = hostStart + first.length;
  if (href.slice(hostStart, hostEnd) !== first) throw new InvalidArgumentError('connection string: unexpected URL serialisation');
  return `${href.slice(0, hostEnd)},${rest.join(',')}${href.slice(hostEnd)}`;
}
