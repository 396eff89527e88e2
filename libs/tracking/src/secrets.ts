/**
 * Keeps credentials out of everything tracking writes: params, tags, the journal, warnings and
 * error messages. Two rules: known secret values (the token, the password, URI userinfo) are
 * replaced wherever they appear, and values of keys that name a secret (`*password*`, `*token*`,
 * `*secret*`, `*api_key*`, `*credential*`, `authorization`) are replaced whole.
 */

export const REDACTED = '***';

/** Key segments that mark a value as secret, e.g. `db.password`, `MLFLOW_TRACKING_TOKEN`, `apiKey`. */
const SECRET_KEY = /(password|passwd|secret|token|api[_-]?key|apikey|credential|authorization|private[_-]?key)/i;

/** True when a param/tag key names a secret. */
export function isSecretKey(key: string): boolean {
  return SECRET_KEY.test(key);
}

/** Replaces known secret values wherever they occur. Secrets shorter than 4 characters are ignored (too likely to hit ordinary text). */
export class SecretRedactor {
  private readonly secrets: string[];

  constructor(secrets: Iterable<string | undefined>) {
    const unique = new Set<string>();
    for (const s of secrets) {
      if (!s || s.length < 4) continue;
      unique.add(s);
      // URI-encoded forms appear in URLs.
      unique.add(encodeURIComponent(s));
    }
    this.secrets = [...unique].sort((a, b) => b.length - a.length);
  }

  /** `text` with every known secret replaced by `***`. */
  redact(text: string): string {
    let out = text;
    for (const secret of this.secrets) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
    return out;
  }

  /** The value to store for `key`: `***` for secret-looking keys, else the redacted value. */
  redactEntry(key: string, value: string): string {
    if (isSecretKey(key) && value !== '') return REDACTED;
    return this.redact(value);
  }
}

/**
 * A URI safe to print and store: userinfo removed and secret-looking query values masked.
 * @example redactUri('https://alice:pw@mlflow.example.org/?token=abc') // 'https://mlflow.example.org/?token=***'
 */
export function redactUri(uri: string): string {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return uri.replace(/\/\/[^/@]*@/, '//');
  }
  url.username = '';
  url.password = '';
  for (const key of [...url.searchParams.keys()]) if (isSecretKey(key)) url.searchParams.set(key, REDACTED);
  return url.toString().replace(/\/$/, '');
}
