// Types of src/uri-redaction.mjs.

/** A connection string safe to print (user info, secret option values and unparseable parts hidden). */
export function redactUri(uri: string): string;
/** The host list of a connection string, for messages; never a secret. */
export function describeHosts(uri: string): string;
/** The secret pieces of a connection string as they may appear in free text, longest first. */
export function uriSecrets(uri: string): string[];
/** Free text with embedded connection strings redacted and every secret of `uris` removed. */
export function scrubText(text: string, uris?: readonly string[]): string;
