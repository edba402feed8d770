// Regenerates docs/capsule-v1-vectors.json and docs/capsule-v1-negative-vectors.json from the fixed inputs in
// test/support/capsule-vectors.ts. Run it only to add vectors (appended; existing ones must come out byte for
// byte the same) or when the format deliberately changes (a new version); the tests check the committed files.
import { writeFile } from 'node:fs/promises';
import { buildNegativeVectors, buildVector, VECTOR_SPECS } from '../test/support/capsule-vectors.ts';

const OUT = new URL('../docs/capsule-v1-vectors.json', import.meta.url);
const NEGATIVE_OUT = new URL('../docs/capsule-v1-negative-vectors.json', import.meta.url);
const vectors = VECTOR_SPECS.map(buildVector);
await writeFile(OUT, `${JSON.stringify({ format: 'mongo-capsule capsule v1 test vectors', vectors }, null, 2)}\n`);
console.log(`wrote ${vectors.length} vectors to ${OUT.pathname}`);
const negative = buildNegativeVectors(vectors);
await writeFile(NEGATIVE_OUT, `${JSON.stringify({ format: 'mongo-capsule capsule v1 negative vectors', entries: negative }, null, 2)}\n`);
console.log(`wrote ${negative.length} negative vectors to ${NEGATIVE_OUT.pathname}`);
