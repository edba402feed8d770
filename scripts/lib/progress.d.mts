// Types of scripts/lib/progress.mjs for the TypeScript tests.
export function withSpinner<T>(title: string, fn: () => T | Promise<T>, options?: { stream?: NodeJS.WritableStream & { isTTY?: boolean } }): Promise<T>;
