/** Whether the process that holds a lock (a pid recorded in a file) still runs. */

/** Is process `pid` alive on this machine? (EPERM: alive, owned by someone else.) */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
