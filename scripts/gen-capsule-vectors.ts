// Regenerates docs/capsule-v1-vectors.json from the fixed inputs in test/support/capsule-vectors.ts.
// Run it only when the format deliberately changes (a new version); the tests check the committed file.
import { writeFile } from 'node:fs/promises';
import { buildVector, VECTOR_SPECS } from '../test/support/capsule-vectors.ts';

const OUT = new URL('../docs/capsule-v1-vectors.json', import.meta.url);
const vectors = VECTOR_SPECS.map(buildVector);
await writeFile(OUT, `${JSON.stringify({ format: 'mongo-capsule capsule v1 test vectors', vectors }, null, 2)}\n`);
console.log(`wrote ${vectors.length} vectors to ${OUT.pathname}`);
