/**
 * Who the members are and how everyone reaches them: container names, ports, and the host:port each member
 * advertises in the replica-set configuration. Plain functions, no Pulumi.
 *
 * The rule (DESIGN.md §6.7): a client on the host and a member inside the Docker network must both be able to
 * reach every advertised address, so each member listens on the same port inside and outside (published on
 * 127.0.0.1 only), and advertises a name that resolves in both places:
 *
 * - 1 member: `localhost:<basePort>`. Inside the container that is the member itself; on the host it is the
 *   published port. Clients use `directConnection=true` and never need discovery.
 * - 3 members: `<container>.localhost:<basePort+i>`. Inside the network the name is a network alias served by
 *   Docker's DNS; on the host, names under `.localhost` resolve to the loopback address where systemd-resolved
 *   or nss-myhostname is the resolver (most Linux desktops and CI runners). Elsewhere (macOS, Windows, minimal
 *   Linux) one /etc/hosts line fixes it; `hostsFileLine` prints it.
 */
import { InvalidArgumentError } from '../src/errors.ts';

export const REPLICA_SET_NAME = 'rs0';
/** Names under this domain resolve to loopback on most Linux hosts (RFC 6761 §6.3). */
export const LOOPBACK_DOMAIN = 'localhost';

export interface MemberPlan {
  index: number;
  /** Docker container name (also its hostname). */
  containerName: string;
  /** The host name the member advertises in the replica-set configuration. */
  host: string;
  /** Port inside and outside the container. */
  port: number;
  /** `host:port` as advertised in the replica-set configuration and used in the connection string. */
  address: string;
  /** Aliases on the Docker network (the advertised name must be one of them, or the container itself). */
  networkAliases: string[];
}

/**
 * A Docker- and DNS-safe prefix for everything the stack creates: `mongo-capsule-<stack>`, lowercase letters,
 * digits and '-', short enough that `<prefix>-<i>.localhost` stays within one 63-byte DNS label per part.
 */
export function resourcePrefix(project: string, stack: string): string {
  const clean = (s: string) =>
    s
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .replace(/-+/g, '-')
      .replace(/^-|-$/g, '');
  const p = clean(project) || 'mongo-capsule';
  const s = clean(stack);
  const prefix = (s ? `${p}-${s}` : p).slice(0, 56).replace(/-$/, '');
  return prefix;
}

export interface TopologyOptions {
  prefix: string;
  members: 1 | 3;
  basePort: number;
}

/** The members of the set, in order; member 0 is the one that creates the root user and gets priority. */
export function planMembers({ prefix, members, basePort }: TopologyOptions): MemberPlan[] {
  if (members !== 1 && members !== 3) throw new InvalidArgumentError(`planMembers: members must be 1 or 3, got ${String(members)}`);
  if (!Number.isInteger(basePort) || basePort < 1 || basePort + members - 1 > 65535) {
    throw new InvalidArgumentError(`planMembers: basePort ${String(basePort)} leaves no room for ${members} ports`);
  }
  if (!/^[a-z0-9][a-z0-9-]{0,55}$/.test(prefix)) throw new InvalidArgumentError(`planMembers: invalid prefix ${JSON.stringify(prefix)}`);
  return Array.from({ length: members }, (_, index) => {
    const containerName = `${prefix}-${index}`;
    const port = basePort + index;
    const host = members === 1 ? 'localhost' : `${containerName}.${LOOPBACK_DOMAIN}`;
    return {
      index,
      containerName,
      host,
      port,
      address: `${host}:${port}`,
      networkAliases: members === 1 ? [containerName] : [containerName, host],
    };
  });
}

/** The `host:port` list for `replSetInitiate` and the seed list, in member order. */
export function replicaSetAddresses(members: readonly MemberPlan[]): string[] {
  return members.map((m) => m.address);
}

/**
 * Hosts a client on the host connects to. One member: the loopback IP itself (never a name that may resolve
 * to ::1 first, where nothing is published). Three members: the advertised names, which the driver must see
 * unchanged to match the replica-set configuration.
 */
export function clientAddresses(members: readonly MemberPlan[]): string[] {
  if (members.length === 1) return [`127.0.0.1:${members[0]!.port}`];
  return replicaSetAddresses(members);
}

/** The /etc/hosts line that makes the advertised names of a 3-member set resolve on any host, or undefined. */
export function hostsFileLine(members: readonly MemberPlan[]): string | undefined {
  if (members.length === 1) return undefined;
  return `127.0.0.1 ${members.map((m) => m.host).join(' ')}`;
}

/** `dns.promises.lookup(host, { all: true })`, injectable for tests. */
export type LookupAll = (host: string) => Promise<ReadonlyArray<{ address: string; family: number }>>;

/**
 * The advertised names of a 3-member set that do not resolve to 127.0.0.1 on this host (where the ports are
 * published). Empty when all do, and always for 1 member (clients use 127.0.0.1 itself).
 */
export async function unresolvedMemberHosts(members: readonly MemberPlan[], lookupAll: LookupAll): Promise<string[]> {
  if (members.length === 1) return [];
  const results = await Promise.all(
    members.map(async (m) => {
      try {
        const addresses = await lookupAll(m.host);
        return addresses.some((a) => a.address === '127.0.0.1') ? undefined : m.host;
      } catch {
        return m.host;
      }
    }),
  );
  return results.filter((h): h is string => h !== undefined);
}
