/**
 * `SecretBytes`: random bytes generated once, at creation, and kept in the stack state as a Pulumi secret
 * (encrypted with the stack's secrets provider). Every later `pulumi up` reuses the same value; only a change of
 * `length` or `encoding` makes a new one. This is what `@pulumi/random`'s RandomBytes does, without adding a
 * package and a provider plugin for two values.
 *
 * The provider object below is serialized into the state by Pulumi's closure serializer and runs later inside
 * the dynamic-provider host, a plain CommonJS process without tsx. So it captures nothing from this module (no
 * imports) and reaches Node's built-ins through `process.getBuiltinModule` (Node ≥ 20.16).
 */
import * as pulumi from '@pulumi/pulumi';

export type SecretEncoding = 'base64' | 'hex';

export interface SecretBytesInputs {
  length: number;
  encoding: SecretEncoding;
}

export interface SecretBytesOutputs extends SecretBytesInputs {
  value: string;
}

export const secretBytesProvider: pulumi.dynamic.ResourceProvider<SecretBytesInputs, SecretBytesOutputs> = {
  async check(_olds, news) {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    if (!Number.isInteger(news.length) || news.length < 1 || news.length > 4096) {
      failures.push({ property: 'length', reason: 'length must be an integer from 1 to 4096' });
    }
    if (news.encoding !== 'base64' && news.encoding !== 'hex') {
      failures.push({ property: 'encoding', reason: 'encoding must be "base64" or "hex"' });
    }
    return { inputs: news, failures };
  },

  async create(inputs) {
    const { randomBytes, randomUUID } = process.getBuiltinModule('node:crypto');
    const bytes = randomBytes(inputs.length);
    const value = bytes.toString(inputs.encoding);
    bytes.fill(0);
    return { id: randomUUID(), outs: { length: inputs.length, encoding: inputs.encoding, value } };
  },

  async diff(_id, olds, news) {
    // The value is never compared: it is the output, and regenerating it would restart the cluster.
    const replaces = (['length', 'encoding'] as const).filter((k) => olds[k] !== news[k]);
    return { changes: replaces.length > 0, replaces, deleteBeforeReplace: false };
  },
};

export interface SecretBytesArgs {
  /** Number of random bytes. */
  readonly length: pulumi.Input<number>;
  /** Text encoding of `value` (default `base64`). */
  readonly encoding?: pulumi.Input<SecretEncoding>;
}

/** Type token of the resource: `pulumi-nodejs:dynamic:SecretBytes`. */
export const SECRET_BYTES_TYPE = 'pulumi-nodejs:dynamic:SecretBytes';

export class SecretBytes extends pulumi.dynamic.Resource {
  /** The random bytes, encoded; always a secret. */
  declare readonly value: pulumi.Output<string>;
  declare readonly length: pulumi.Output<number>;
  declare readonly encoding: pulumi.Output<SecretEncoding>;

  constructor(name: string, args: SecretBytesArgs, opts: pulumi.CustomResourceOptions = {}) {
    super(
      secretBytesProvider,
      name,
      { length: args.length, encoding: args.encoding ?? 'base64', value: undefined },
      { ...opts, additionalSecretOutputs: [...(opts.additionalSecretOutputs ?? []), 'value'] },
      undefined,
      'SecretBytes',
    );
  }
}
