/**
 * Handles that follow an encrypted client across CMK rotations.
 *
 * libmongocrypt gets the CMKs once, when a MongoClient is built, so the encrypted client swaps in a new
 * MongoClient + ClientEncryption when the capsule's generation changes (encrypted-client.ts). An application
 * keeps handles, though: `const people = enc.client.db('app').collection('people')` at start-up. The objects here
 * stand in for the client, its Dbs and Collections, their cursors and the ClientEncryption, and forward every
 * call to the *current* generation's object, so a kept handle keeps working.
 *
 * When libmongocrypt still reports a KMS provider it lacks (the handle's call ran on the generation before the
 * switch), the client switches, and:
 * - reads (findOne, countDocuments, estimatedDocumentCount, distinct; a cursor before its first document; the
 *   ClientEncryption's encrypt and decrypt) run once more on the new generation;
 * - a write that returns a document (findOneAnd*) is never repeated (it ran on the server): CmkRotatedError says
 *   it was applied and to read the document again;
 * - a cursor that already delivered documents: CmkRotatedError, "re-run the query";
 * - a change stream opens again on the new generation from the resume token of what it delivered last;
 * - a session holds a real session per generation; a transaction begun before the switch: CmkRotatedError.
 * Every other error passes through unchanged. Each stand-in is a Proxy over an object with the driver class's
 * prototype, so `instanceof MongoClient` (Db, Collection, FindCursor, ClientEncryption) holds.
 */
import type { ClientEncryption, ClientSession, MongoClient } from 'mongodb';
import { CmkRotatedError } from '../errors.ts';

/** libmongocrypt asks for a KMS provider this client was not given (a data key moved to a newer CMK). */
export function isProviderMissing(e: unknown): boolean {
  const msg = e instanceof Error ? `${e.message} ${e.cause instanceof Error ? e.cause.message : ''}` : '';
  return /kms provider .*not configured/i.test(msg);
}

/** What the stand-ins need from the encrypted client. */
export interface GenerationSource<G extends { client: MongoClient; encryption: ClientEncryption }> {
  current(): G;
  /** Called with the generation a call failed on: switches if the capsule changed; true when `current()` is newer. */
  switchFrom(g: G): Promise<boolean>;
  capsuleName: string;
}

const READS = new Set(['findOne', 'countDocuments', 'estimatedDocumentCount', 'distinct']);
const RETURNING_WRITES = new Set(['findOneAndUpdate', 'findOneAndReplace', 'findOneAndDelete']);
const CURSORS = new Set(['find', 'aggregate']);
const CURSOR_FETCHES = new Set(['toArray', 'next', 'tryNext', 'hasNext', 'forEach']);
const LOCAL_CRYPTO = new Set(['encrypt', 'decrypt', 'encryptExpression']);

type AnyFn = (...args: unknown[]) => unknown;

/**
 * A Proxy whose prototype is `proto`, forwarding what `handler` does not take to `real()`; the arguments of a
 * forwarded call pass through `map` (stand-in sessions become the real session of the generation called).
 */
function standIn<T extends object>(proto: object, real: () => object, take: (prop: string | symbol) => unknown, map?: (args: unknown[]) => unknown[]): T {
  return new Proxy(Object.create(proto) as T, {
    get(_t, prop) {
      const taken = take(prop);
      if (taken !== undefined) return taken;
      const target = real();
      const v = Reflect.get(target, prop, target) as unknown;
      if (typeof v !== 'function') return v;
      if (map === undefined) return (v as AnyFn).bind(target);
      return (...args: unknown[]) => {
        let mapped: unknown[];
        try {
          mapped = map(args);
        } catch (e) {
          // Driver calls that take a session return promises: fail the same way.
          if (e instanceof CmkRotatedError) return Promise.reject(e);
          throw e;
        }
        return (v as AnyFn).apply(target, mapped);
      };
    },
    set(_t, prop, value) {
      return Reflect.set(real(), prop, value);
    },
    has(_t, prop) {
      return Reflect.has(real(), prop);
    },
  });
}

export function stableHandles<G extends { client: MongoClient; encryption: ClientEncryption }>(source: GenerationSource<G>): { client: MongoClient; encryption: ClientEncryption } {
  const rotated = (what: string, hint: string, cause: unknown) => new CmkRotatedError(`${what}: capsule ${source.capsuleName} switched to a new CMK during the call`, { hint, cause });

  /** Runs a read on the current generation; after a provider-missing failure, switches and runs it once more. */
  const read = async <T>(what: string, op: (g: G) => Promise<T>): Promise<T> => {
    const g = source.current();
    try {
      return await op(g);
    } catch (e) {
      if (!isProviderMissing(e) || !(await source.switchFrom(g))) throw e;
      try {
        return await op(source.current());
      } catch (e2) {
        if (isProviderMissing(e2)) throw rotated(what, 'retry the operation: a CMK rotation or its abandonment is under way (`mongo-capsule doctor` shows it)', e2);
        throw e2;
      }
    }
  };

  /** Any other call: run once; a provider-missing failure switches the client and becomes a typed error. */
  const once = async <T>(what: string, hint: string, op: (g: G) => Promise<T>): Promise<T> => {
    const g = source.current();
    try {
      return await op(g);
    } catch (e) {
      if (!isProviderMissing(e)) throw e;
      await source.switchFrom(g).catch(() => false);
      throw rotated(what, hint, e);
    }
  };

  /** A session stand-in: one real session per generation it was used on, ended together. */
  interface SessionState {
    options: unknown[];
    byGeneration: Map<G, ClientSession>;
    /** The generation a transaction was begun on, while one is open. */
    transaction?: G;
    /** The session used last: a new generation's session starts from its cluster and operation times. */
    last?: ClientSession;
  }
  const sessions = new WeakMap<object, SessionState>();

  const sessionFor = (state: SessionState, g: G): ClientSession => {
    const begun = state.transaction;
    if (begun !== undefined && begun !== g && state.byGeneration.get(begun)?.inTransaction() === true) {
      throw new CmkRotatedError(`an operation in a transaction: capsule ${source.capsuleName} switched to a new CMK after the transaction began`, {
        hint: 'abort the transaction (session.abortTransaction()) and run it again from its start, with the same session (or run withTransaction again): nothing of this operation was sent',
      });
    }
    let real = state.byGeneration.get(g);
    if (real === undefined) {
      real = (g.client.startSession as AnyFn).apply(g.client, state.options) as ClientSession;
      // Causal consistency carries over: the new session reads no older than what the last one saw.
      if (state.last?.clusterTime !== undefined) real.advanceClusterTime(state.last.clusterTime);
      if (state.last?.operationTime !== undefined) real.advanceOperationTime(state.last.operationTime);
      state.byGeneration.set(g, real);
    }
    state.last = real;
    return real;
  };

  /** Arguments for a call on generation `g`: an options object naming a stand-in session gets that generation's. */
  const onGeneration = (args: unknown[], g: G): unknown[] => {
    if (!args.some((a) => a !== null && typeof a === 'object' && sessions.has((a as { session?: object }).session as object))) return args;
    return args.map((a) => {
      const state = a !== null && typeof a === 'object' ? sessions.get((a as { session?: object }).session as object) : undefined;
      return state === undefined ? a : { ...(a as object), session: sessionFor(state, g) };
    });
  };
  const onCurrent = (args: unknown[]) => onGeneration(args, source.current());

  const startSession = (options: unknown[]): ClientSession => {
    const state: SessionState = { options, byGeneration: new Map() };
    const first = sessionFor(state, source.current());
    const inTransactionSession = () => (state.transaction !== undefined ? state.byGeneration.get(state.transaction) : undefined);
    const ending = (method: 'commitTransaction' | 'abortTransaction') => async (...args: unknown[]) => {
      const real = inTransactionSession() ?? sessionFor(state, source.current());
      try {
        return await (real[method] as AnyFn).apply(real, args);
      } finally {
        if (!real.inTransaction()) state.transaction = undefined;
      }
    };
    /** The current generation's session, on which a transaction begins now. */
    const begin = (): ClientSession => {
      const g = source.current();
      const real = sessionFor(state, g);
      state.transaction = g;
      return real;
    };
    const proxy: ClientSession = standIn<ClientSession>(Object.getPrototypeOf(first) as object, () => inTransactionSession() ?? sessionFor(state, source.current()), (prop) => {
      switch (prop) {
        case 'startTransaction':
          return (...args: unknown[]) => {
            const real = begin();
            return (real.startTransaction as AnyFn).apply(real, args);
          };
        case 'commitTransaction':
          return ending('commitTransaction');
        case 'abortTransaction':
          return ending('abortTransaction');
        case 'withTransaction':
          return async (fn: (s: ClientSession) => Promise<unknown>, ...rest: unknown[]) => {
            const real = begin();
            try {
              // The callback gets this stand-in, so collections it uses map it to the generation they run on.
              return await (real.withTransaction as AnyFn).call(real, () => fn(proxy), ...rest);
            } finally {
              state.transaction = undefined;
            }
          };
        case 'endSession':
          return async (...args: unknown[]) => {
            for (const real of state.byGeneration.values()) await (real.endSession as AnyFn).apply(real, args);
          };
        default:
          return undefined;
      }
    });
    sessions.set(proxy, state);
    return proxy;
  };

  const cursor = (make: (g: G) => object): object => {
    let g = source.current();
    let real = make(g) as Record<string | symbol, unknown>;
    const builders: [string | symbol, unknown[]][] = [];
    let delivered = false;
    const rebuild = () => {
      g = source.current();
      real = make(g) as Record<string | symbol, unknown>;
      for (const [prop, args] of builders) (real[prop] as AnyFn).apply(real, args);
    };
    const fetch = (prop: string) => async (...args: unknown[]) => {
      if (prop === 'forEach' && typeof args[0] === 'function') {
        const cb = args[0] as AnyFn;
        args = [(doc: unknown) => {
          delivered = true;
          return cb(doc);
        }];
      }
      const call = () => (real[prop] as AnyFn).apply(real, args) as Promise<unknown>;
      try {
        const r = await call();
        if ((prop === 'next' || prop === 'tryNext') && r !== null) delivered = true;
        return r;
      } catch (e) {
        if (!isProviderMissing(e)) throw e;
        const from = g;
        if (delivered) {
          await source.switchFrom(from).catch(() => false);
          throw rotated('reading a cursor', 're-run the query: this cursor had already returned documents when the client switched to the new CMK, and the next query uses it', e);
        }
        if (!(await source.switchFrom(from))) throw e;
        rebuild();
        try {
          const r = await call();
          if ((prop === 'next' || prop === 'tryNext') && r !== null) delivered = true;
          return r;
        } catch (e2) {
          if (isProviderMissing(e2)) throw rotated('reading a cursor', 're-run the query: a CMK rotation or its abandonment is under way', e2);
          throw e2;
        }
      }
    };
    const proxy: object = standIn(Object.getPrototypeOf(real) as object, () => real, (prop) => {
      if (typeof prop === 'string' && CURSOR_FETCHES.has(prop)) return fetch(prop);
      if (prop === Symbol.asyncIterator) {
        return async function* () {
          const hasNext = fetch('hasNext');
          const next = fetch('next');
          while (await hasNext()) yield await next();
        };
      }
      const v = real[prop];
      if (typeof v !== 'function') return undefined;
      // Builders (sort, limit, project, batchSize, …) return the cursor itself: record them, to replay on a new one.
      return (...args: unknown[]) => {
        const r = (v as AnyFn).apply(real, args);
        if (r === real) {
          builders.push([prop, args]);
          return proxy;
        }
        return r;
      };
    });
    return proxy;
  };

  /**
   * A change stream that follows a switch: when an event cannot be decrypted, it is opened again on the current
   * generation with `startAfter` the resume token of what it delivered last, so that event comes again and none is
   * lost. `next`, `tryNext`, `hasNext` and `for await` follow; `on('change')` listeners stay on the stream they
   * were added to.
   */
  const changeStream = (watch: (g: G, pipeline: unknown, options: Record<string, unknown>) => object, pipeline: unknown, options: Record<string, unknown>): object => {
    type Stream = Record<string | symbol, unknown> & { resumeToken?: unknown; closed?: boolean; close(): Promise<void> };
    let g = source.current();
    let real = watch(g, pipeline, options) as Stream;
    const fetch = (prop: string) => async (...args: unknown[]): Promise<unknown> => {
      try {
        return await (real[prop] as AnyFn).apply(real, args);
      } catch (e) {
        if (!isProviderMissing(e)) throw e;
        const from = g;
        const token = real.resumeToken;
        const switched = await source.switchFrom(from).catch(() => false);
        if (!switched || token === undefined) {
          throw rotated('reading a change stream', 'open the change stream again (option `startAfter`: its last resume token, `stream.resumeToken`); it had no resume token to continue from when the client switched to the new CMK', e);
        }
        await real.close().catch(() => {});
        const { resumeAfter: _r, startAfter: _s, startAtOperationTime: _t, ...rest } = options;
        g = source.current();
        real = watch(g, pipeline, { ...rest, startAfter: token }) as Stream;
        try {
          return await (real[prop] as AnyFn).apply(real, args);
        } catch (e2) {
          if (isProviderMissing(e2)) throw rotated('reading a change stream', 'open the change stream again from `stream.resumeToken`: a CMK rotation or its abandonment is under way', e2);
          throw e2;
        }
      }
    };
    const proxyRef: { value?: object } = {};
    // The wrapper given to the stream for each 'error' listener, so that removing the listener removes it.
    const errorWrappers = new WeakMap<AnyFn, AnyFn>();
    proxyRef.value = standIn(Object.getPrototypeOf(real) as object, () => real, (prop) => {
      if (prop === 'next' || prop === 'tryNext' || prop === 'hasNext') return fetch(prop);
      if (prop === 'on' || prop === 'once' || prop === 'addListener' || prop === 'prependListener' || prop === 'prependOnceListener') {
        // Listeners stay on this stream; its 'error' event says what happened in the typed error, not libmongocrypt's.
        return (event: string | symbol, listener: AnyFn) => {
          let l = listener;
          if (event === 'error') {
            l = errorWrappers.get(listener) ?? ((e: unknown) =>
              listener(isProviderMissing(e) ? rotated('a change stream with listeners', 'open the change stream again with option `startAfter: stream.resumeToken` (listeners are not moved to the new CMK; next()/for await are)', e) : e));
            errorWrappers.set(listener, l);
          }
          (real[prop] as AnyFn).call(real, event, l);
          return proxyRef.value;
        };
      }
      if (prop === 'off' || prop === 'removeListener') {
        return (event: string | symbol, listener: AnyFn) => {
          (real[prop] as AnyFn).call(real, event, (event === 'error' ? errorWrappers.get(listener) : undefined) ?? listener);
          return proxyRef.value;
        };
      }
      if (prop === Symbol.asyncIterator) {
        return async function* () {
          if (real.closed === true) return;
          const next = fetch('next');
          try {
            while (true) yield await next();
          } finally {
            await real.close().catch(() => {});
          }
        };
      }
      return undefined;
    });
    return proxyRef.value;
  };
  /** `watch(pipeline?, options?)` on whatever `on(g)` gives. */
  const watchOn = (on: (g: G) => { watch: AnyFn }) => (pipeline: unknown = [], options: Record<string, unknown> = {}) =>
    changeStream((g, p, o) => on(g).watch(p, ...onGeneration([o], g)) as object, pipeline, options);

  const collection = (dbArgs: unknown[], collArgs: unknown[]): object => {
    const real = (g: G) => {
      const d = (g.client.db as AnyFn).apply(g.client, dbArgs) as { collection: AnyFn };
      return d.collection(...collArgs) as Record<string, AnyFn>;
    };
    return standIn(Object.getPrototypeOf(real(source.current())) as object, () => real(source.current()), (prop) => {
      if (typeof prop !== 'string') return undefined;
      if (READS.has(prop)) return (...args: unknown[]) => read(`${prop} on ${String(collArgs[0])}`, async (g) => real(g)[prop]!(...onGeneration(args, g)) as Promise<unknown>);
      if (RETURNING_WRITES.has(prop)) {
        return (...args: unknown[]) =>
          once(`${prop} on ${String(collArgs[0])} was applied, but its returned document could not be decrypted`, 'the write ran on the server once and is not repeated: read the document again (the client now holds the new CMK)', async (g) => real(g)[prop]!(...onGeneration(args, g)) as Promise<unknown>);
      }
      if (CURSORS.has(prop)) return (...args: unknown[]) => cursor((g) => real(g)[prop]!(...onGeneration(args, g)) as object);
      if (prop === 'watch') return watchOn((g) => real(g) as { watch: AnyFn });
      return undefined;
    }, onCurrent);
  };

  const db = (dbArgs: unknown[]): object => {
    const real = (g: G) => (g.client.db as AnyFn).apply(g.client, dbArgs) as Record<string, AnyFn>;
    return standIn(Object.getPrototypeOf(real(source.current())) as object, () => real(source.current()), (prop) => {
      if (prop === 'collection') return (...collArgs: unknown[]) => collection(dbArgs, collArgs);
      if (prop === 'aggregate') return (...args: unknown[]) => cursor((g) => real(g).aggregate!(...onGeneration(args, g)) as object);
      if (prop === 'watch') return watchOn((g) => real(g) as { watch: AnyFn });
      return undefined;
    }, onCurrent);
  };

  const client = standIn<MongoClient>(Object.getPrototypeOf(source.current().client) as object, () => source.current().client, (prop) => {
    if (prop === 'db') return (...dbArgs: unknown[]) => db(dbArgs);
    if (prop === 'startSession') return (...options: unknown[]) => startSession(options);
    if (prop === 'watch') return watchOn((g) => g.client as unknown as { watch: AnyFn });
    if (prop === 'withSession') {
      return async (a: unknown, b?: unknown) => {
        const [options, fn] = typeof a === 'function' ? [[], a as (s: ClientSession) => Promise<unknown>] : [[a], b as (s: ClientSession) => Promise<unknown>];
        const session = startSession(options);
        try {
          return await fn(session);
        } finally {
          await session.endSession();
        }
      };
    }
    return undefined;
  }, onCurrent);

  const encryption = standIn<ClientEncryption>(Object.getPrototypeOf(source.current().encryption) as object, () => source.current().encryption, (prop) => {
    if (typeof prop !== 'string' || !LOCAL_CRYPTO.has(prop)) return undefined;
    return (...args: unknown[]) => read(`${prop} with ClientEncryption`, (g) => (g.encryption as unknown as Record<string, AnyFn>)[prop]!(...args) as Promise<unknown>);
  });

  return { client, encryption };
}
