/** The crypto core: pure functions, no I/O. Importing it registers every KEM suite. */
import './ml-kem.ts';
import './ntru.ts';
export * from './kem.ts';
export * from './identity.ts';
export * from './capsule.ts';
export * from './recipients.ts';
