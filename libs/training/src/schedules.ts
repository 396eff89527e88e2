/** A learning-rate schedule: the rate to use at a (0-based) optimisation step. */
export type LrSchedule = (step: number) => number;

export interface WarmupOptions {
  /** Steps of linear warm-up from `base / warmupSteps` to `base` (0 = none). */
  warmupSteps?: number;
}

function withWarmup(base: number, warmupSteps: number, after: LrSchedule): LrSchedule {
  return (step) => (step < warmupSteps ? (base * (step + 1)) / warmupSteps : after(step));
}

/**
 * Step decay: `base * gamma^k` where k is the number of milestones <= step (MoCo/CEM500K: x0.1 at
 * epochs 120 and 160, expressed here in steps).
 *
 * @example stepSchedule(0.015, [120, 160], 0.1)(130) // 0.0015
 */
export function stepSchedule(base: number, milestones: readonly number[], gamma = 0.1, { warmupSteps = 0 }: WarmupOptions = {}): LrSchedule {
  return withWarmup(base, warmupSteps, (step) => base * gamma ** milestones.filter((m) => step >= m).length);
}

/** Half-cosine decay from `base` to `minLr` over `totalSteps` (after the optional warm-up). */
export function cosineSchedule(base: number, totalSteps: number, { warmupSteps = 0, minLr = 0 }: WarmupOptions & { minLr?: number } = {}): LrSchedule {
  return withWarmup(base, warmupSteps, (step) => {
    const t = Math.min(1, (step - warmupSteps) / Math.max(1, totalSteps - 1 - warmupSteps));
    return minLr + 0.5 * (base - minLr) * (1 + Math.cos(Math.PI * t));
  });
}

/**
 * One-cycle (Smith 2018, PyTorch `OneCycleLR` with cosine annealing): from `maxLr / divFactor` up to
 * `maxLr` over `pctStart` of the steps, then down to `maxLr / (divFactor * finalDivFactor)`.
 */
export function oneCycleSchedule(maxLr: number, totalSteps: number, { pctStart = 0.3, divFactor = 25, finalDivFactor = 1e4 } = {}): LrSchedule {
  const start = maxLr / divFactor;
  const end = start / finalDivFactor;
  const up = Math.max(1, Math.round(pctStart * totalSteps) - 1);
  const cos = (from: number, to: number, t: number) => to + ((from - to) * (1 + Math.cos(Math.PI * Math.min(1, Math.max(0, t))))) / 2;
  return (step) => (step <= up ? cos(start, maxLr, step / up) : cos(maxLr, end, (step - up) / Math.max(1, totalSteps - 1 - up)));
}

export function constantSchedule(lr: number): LrSchedule {
  return () => lr;
}
