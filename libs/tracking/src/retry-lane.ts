/**
 * A background worker that runs one step at a time until there is nothing left, backing off
 * exponentially while steps fail. The delivery queue has two: one for REST records, one for
 * artifact files, so a large upload never holds metrics back.
 */
import { backoffDelay, type BackoffPolicy } from './batching.js';

/** What a step reports: delivered something, nothing to do, failed (retry later), or cannot go on. */
export type LaneStep = 'ok' | 'idle' | 'retry' | 'halt';

export class RetryLane {
  private running: Promise<void> | undefined;
  private attempt = 0;
  private sleeping: { timer: NodeJS.Timeout; wake: () => void } | undefined;
  private stopped = false;
  /** While > 0 (during a flush), backoff delays are capped at `urgentMaxMs`. */
  urgent = 0;

  constructor(
    private readonly step: () => Promise<LaneStep>,
    private readonly policy: BackoffPolicy,
    private readonly urgentMaxMs = 1000,
  ) {}

  /** Starts the worker if it is not running (a running worker picks up new work by itself). */
  kick(): void {
    if (this.stopped || this.running) return;
    this.running = this.loop().finally(() => {
      this.running = undefined;
    });
  }

  /** Ends a backoff wait now, so the next attempt happens immediately. */
  wake(): void {
    this.sleeping?.wake();
  }

  /** True while a step is running or the worker waits to retry. */
  get busy(): boolean {
    return this.running !== undefined;
  }

  /** Consecutive failed attempts so far (0 when the last step succeeded). */
  get failures(): number {
    return this.attempt;
  }

  /** Stops after the current step; wakes a waiting worker so it can exit. */
  stop(): void {
    this.stopped = true;
    this.wake();
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      let result: LaneStep;
      try {
        result = await this.step();
      } catch {
        result = 'retry';
      }
      if (result === 'ok') {
        this.attempt = 0;
        continue;
      }
      if (result !== 'retry') return;
      this.attempt++;
      const delay = backoffDelay(this.attempt, this.policy);
      await this.sleep(this.urgent > 0 ? Math.min(delay, this.urgentMaxMs) : delay);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.sleeping = undefined;
        resolve();
      };
      const timer = setTimeout(wake, ms);
      timer.unref();
      this.sleeping = { timer, wake };
    });
  }
}
