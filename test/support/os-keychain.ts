/**
 * Whether the real OS keychain can be used by a test, under a test service of its own so that nothing the user
 * keeps in `mongo-capsule` is ever touched. Undefined when it works; otherwise why not (printed by the skip).
 */
import { OsKeychain } from '../../src/keys/keychain.ts';

export async function osKeychainUnavailableReason(service: string): Promise<string | undefined> {
  if (process.platform === 'linux' && !process.env.DBUS_SESSION_BUS_ADDRESS) return 'no D-Bus session bus: run the tests with `npm test`';
  try {
    const k = new OsKeychain({ service });
    await k.store('probe', new Uint8Array([1, 2, 3]));
    await k.delete('probe');
    return undefined;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}
