/**
 * The TensorFlow C library logs at load time, before anything can configure it: absl's "All log
 * messages before absl::InitializeLog() is called are written to STDERR" and oneDNN's INFO line.
 * `TF_CPP_MIN_LOG_LEVEL` does not reach them (they are written during static initialisation), so
 * the only way to keep them off a user's terminal is to point file descriptor 2 at /dev/null while
 * the native library loads, then back.
 *
 * With the small addon `npm run setup` builds (libs/tf/native/stderr.c: dup + dup2) that is exact
 * for any stderr. Without it (Node has no dup2), "back" reopens the original target through
 * /proc/self/fd. That is exact
 * for terminals and pipes (the same device / the same pipe). For a regular file it opens a second
 * file description that appends: exact when stderr appends anyway or is its own file, but
 * `cmd > log 2>&1` shares one offset with stdout, so there (and for sockets, or without /proc) the
 * messages stay. `EMSEG_VERBOSE=1` keeps them too.
 */
import { closeSync, existsSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

interface StderrAddon {
  silence(): number;
  restore(saved: number): void;
}

/** libs/tf/native/build/stderr.node, if setup built it (src/ and dist/ are siblings of native/). */
function loadAddon(): StderrAddon | null {
  const path = fileURLToPath(new URL('../native/build/stderr.node', import.meta.url));
  if (!existsSync(path)) return null;
  try {
    return createRequire(import.meta.url)(path) as StderrAddon;
  } catch {
    return null;
  }
}

const O_APPEND = 0o2000;

/**
 * True when stderr can be reopened exactly: a terminal, a pipe, or a regular file that is opened
 * for appending or not shared with stdout (then appending is where its offset is anyway).
 */
function canSilence(): boolean {
  if (process.platform !== 'linux' || process.env.EMSEG_VERBOSE === '1') return false;
  try {
    const st = fstatSync(2);
    if (st.isCharacterDevice() || st.isFIFO()) return true;
    if (!st.isFile()) return false;
    const flags = Number.parseInt(/^flags:\s*([0-7]+)/m.exec(readFileSync('/proc/self/fdinfo/2', 'utf8'))?.[1] ?? '0', 8);
    if (flags & O_APPEND) return true;
    const out = fstatSync(1);
    return out.dev !== st.dev || out.ino !== st.ino;
  } catch {
    return false;
  }
}

/** Runs `load` with native writes to stderr discarded; Node's own stderr stream is unaffected. */
export function withNativeStderrSilenced<T>(load: () => T): T {
  if (process.env.EMSEG_VERBOSE === '1') return load();
  const addon = loadAddon();
  if (addon) {
    void process.stderr; // created against the real fd 2 (its TTY-ness decided correctly)
    const saved = addon.silence();
    try {
      return load();
    } finally {
      addon.restore(saved);
    }
  }
  if (!canSilence()) return load();
  // Create process.stderr now, against the real fd 2, so its TTY-ness is decided correctly.
  void process.stderr;
  let saved: number;
  try {
    saved = openSync('/proc/self/fd/2', 'a');
  } catch {
    return load();
  }
  let silenced = false;
  try {
    closeSync(2);
    const nul = openSync('/dev/null', 'a');
    silenced = nul === 2;
    if (!silenced) closeSync(nul);
    return load();
  } finally {
    if (silenced) closeSync(2);
    // The lowest free descriptor is 2 again: reopen the original stderr there.
    const fd = openSync(`/proc/self/fd/${saved}`, 'a');
    if (fd !== 2) closeSync(fd);
    closeSync(saved);
  }
}
