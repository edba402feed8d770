// `@openforge-sh/liboqs` is an on-demand test oracle, not a dependency: its package asks for Node >= 22 while
// mongo-capsule supports Node >= 20.19, so `npm ci` does not install it. The NTRU interop test and the bench
// load it when present (`npm install --no-save @openforge-sh/liboqs@0.14.3`) and skip with that hint otherwise.
// These are the only entry points they use; the declaration keeps the type check independent of its presence.
declare module '@openforge-sh/liboqs' {
  export function createNTRUHps4096821(): Promise<unknown>;
  export function createNTRUHrss701(): Promise<unknown>;
}
