export function defaultCacheDir(env?: NodeJS.ProcessEnv): string;
