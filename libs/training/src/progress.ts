/**
 * A progress bar for long loops: rate (items/s), ETA and the latest metrics.
 * On a TTY it redraws one line; otherwise (CI, files) it prints a line every `intervalMs`.
 *
 * @example
 * const bar = new ProgressBar({ label: 'moco', total: 1000, unit: 'img' });
 * bar.tick(128, { loss: 6.2 }); ... bar.done();
 */
export interface ProgressOptions {
  label: string;
  /** Total number of steps, if known. */
  total?: number;
  /** What the rate counts (e.g. 'img'); `tick(n)` adds n of them. */
  unit?: string;
  stream?: NodeJS.WriteStream;
  intervalMs?: number;
  /** Steps already done (when resuming). */
  start?: number;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

function formatValue(v: number): string {
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(2) : v.toFixed(4);
}

export class ProgressBar {
  private step: number;
  private units = 0;
  private readonly startedAt = Date.now();
  private lastDraw = 0;
  private metrics: Record<string, number> = {};
  private readonly stream: NodeJS.WriteStream;
  private readonly tty: boolean;

  constructor(private readonly opts: ProgressOptions) {
    this.step = opts.start ?? 0;
    this.stream = opts.stream ?? process.stderr;
    this.tty = Boolean(this.stream.isTTY);
  }

  /** One step done, worth `units` of the rate's unit; `metrics` are shown next to the bar. */
  tick(units = 1, metrics: Record<string, number> = {}): void {
    this.step++;
    this.units += units;
    this.metrics = { ...this.metrics, ...metrics };
    const now = Date.now();
    const every = this.opts.intervalMs ?? (this.tty ? 100 : 10_000);
    if (now - this.lastDraw >= every || this.step === this.opts.total) {
      this.lastDraw = now;
      this.draw();
    }
  }

  /** The current line, e.g. `moco [=====>    ] 50/100 12.5 img/s ETA 4s loss 6.1000`. */
  line(): string {
    const elapsed = (Date.now() - this.startedAt) / 1000;
    const rate = elapsed > 0 ? this.units / elapsed : 0;
    const done = this.step - (this.opts.start ?? 0);
    const parts = [this.opts.label];
    if (this.opts.total) {
      const width = 24;
      const filled = Math.min(width, Math.floor((width * this.step) / this.opts.total));
      parts.push(`[${'='.repeat(filled)}${filled < width ? '>' : ''}${' '.repeat(Math.max(0, width - filled - 1))}]`, `${this.step}/${this.opts.total}`);
      const remaining = this.opts.total - this.step;
      parts.push(`ETA ${formatDuration(done > 0 ? (elapsed / done) * remaining : Infinity)}`);
    } else {
      parts.push(`${this.step}`);
    }
    parts.push(`${rate.toFixed(1)} ${this.opts.unit ?? 'it'}/s`);
    for (const [k, v] of Object.entries(this.metrics)) parts.push(`${k} ${formatValue(v)}`);
    return parts.join(' ');
  }

  private draw(): void {
    this.stream.write(this.tty ? `\r\x1b[2K${this.line()}` : `${this.line()}\n`);
  }

  /** Prints the final line (with elapsed time) and moves to a new line. */
  done(message = ''): void {
    const elapsed = formatDuration((Date.now() - this.startedAt) / 1000);
    this.stream.write(`${this.tty ? '\r\x1b[2K' : ''}${this.line()} (${elapsed})${message ? ` ${message}` : ''}\n`);
  }
}
