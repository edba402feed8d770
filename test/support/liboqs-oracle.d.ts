// `@openforge-sh/liboqs` is an on-demand test oracle, not a dependency: its package asks for Node >= 22 while
// mongo-capsule supports Node >= 20.19, so `npm ci` does not install it. The NTRU interop test gets it from the
// `oracle` setup step (a pinned Node 22 and liboqs in the cache, run as a child: test/support/liboqs-peer.ts, whose
// JSON-lines protocol is typed in liboqs-oracle.d.mts) or, on Node >= 22, imports it in-process; the bench imports it
// in-process, an installed copy or the cache's (bench/ntru.ts). Both skip with a hint otherwise.
// These are the only entry points they use; the declaration keeps the type check independent of its presence.
declare module '@openforge-sh/liboqs' {
  export function createNTRUHps4096821(): Promise<unknown>;
  export function createNTRUHrss701(): Promise<unknown>;
}
