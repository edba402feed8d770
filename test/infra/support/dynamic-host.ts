/**
 * Loads a dynamic provider the way Pulumi's dynamic-provider host does: serialize it with Pulumi's closure
 * serializer, then `require-from-string` the text in this process (CommonJS, no TypeScript) and call `handler()`.
 * What passes here is what runs in the host after `pulumi up` stored it in the state.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as pulumi from '@pulumi/pulumi';

const pulumiRequire = createRequire(join(dirname(createRequire(import.meta.url).resolve('@pulumi/pulumi/package.json')), 'package.json'));
const requireFromString = pulumiRequire('require-from-string') as (code: string, filename?: string) => Record<string, () => unknown>;

export async function serializeProvider(provider: object): Promise<string> {
  const sf = await pulumi.runtime.serializeFunction(() => provider, { allowSecrets: true });
  if (sf.exportName !== 'handler') throw new Error(`unexpected export name ${sf.exportName}`);
  return sf.text;
}

export async function loadLikeTheHost<T>(provider: T): Promise<{ provider: T; text: string }> {
  const text = await serializeProvider(provider as object);
  const mod = requireFromString(text, join(process.cwd(), '__pulumi_dynamic_provider.js'));
  return { provider: mod.handler!() as T, text };
}
