import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ProgressBar, formatDuration, gracefulStop } from '@emseg/training';

describe('ProgressBar', () => {
  it('shows position, rate, ETA and metrics, one line per draw when not a TTY', () => {
    const stream = new PassThrough() as unknown as NodeJS.WriteStream;
    let out = '';
    (stream as unknown as PassThrough).on('data', (d: Buffer) => (out += d.toString()));
    const bar = new ProgressBar({ label: 'moco', total: 4, unit: 'img', stream, intervalMs: 0 });
    bar.tick(8, { loss: 6.5 });
    bar.tick(8, { loss: 6.25 });
    expect(bar.line()).toMatch(/^moco \[=+>? *\] 2\/4 ETA \d+s [\d.]+ img\/s loss 6\.2500$/);
    bar.done();
    expect(out.trim().split('\n')).toHaveLength(3);
  });

  it('formats durations', () => {
    expect(formatDuration(5)).toBe('5s');
    expect(formatDuration(125)).toBe('2m05s');
    expect(formatDuration(3 * 3600 + 60)).toBe('3h01m');
    expect(formatDuration(Infinity)).toBe('?');
  });
});

describe('gracefulStop', () => {
  it('turns the first SIGINT into a stop request instead of killing the process', async () => {
    const messages: string[] = [];
    const stop = gracefulStop({ log: (m) => messages.push(m) });
    expect(stop.requested).toBe(false);
    process.kill(process.pid, 'SIGINT');
    await new Promise((r) => setTimeout(r, 50));
    expect(stop.requested).toBe(true);
    expect(stop.signal).toBe('SIGINT');
    expect(messages[0]).toMatch(/SIGINT received: finishing this step/);
    stop.dispose();
  });
});
