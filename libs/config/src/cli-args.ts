/**
 * Command-line parsers turn a flag given twice into an array (`--encoder a --encoder b`), which
 * code expecting one string then trips over. Say so instead, naming the flag and both values.
 */

/** An error message for the first of `names` given more than once in `argv`, or null. */
export function repeatedOption(argv: Record<string, unknown>, names: readonly string[]): string | null {
  for (const name of names) {
    const value = argv[name];
    if (Array.isArray(value)) return `--${name} was given ${value.length} times (${value.map((v) => JSON.stringify(v)).join(', ')}); give it once`;
  }
  return null;
}
