import { describe, expect, it } from 'vitest';
import { cosineSchedule, oneCycleSchedule, stepSchedule } from '@emseg/training';

describe('learning-rate schedules', () => {
  it('step schedule multiplies by gamma at each milestone (CEM500K: x0.1 at 120 and 160)', () => {
    const lr = stepSchedule(0.015, [120, 160], 0.1);
    expect(lr(0)).toBeCloseTo(0.015, 12);
    expect(lr(119)).toBeCloseTo(0.015, 12);
    expect(lr(120)).toBeCloseTo(0.0015, 12);
    expect(lr(160)).toBeCloseTo(0.00015, 12);
  });

  it('linear warm-up reaches the base rate at the end of warm-up', () => {
    const lr = stepSchedule(0.1, [], 0.1, { warmupSteps: 4 });
    [0.025, 0.05, 0.075, 0.1, 0.1].forEach((want, step) => expect(lr(step)).toBeCloseTo(want, 12));
  });

  it('cosine decays from base to minLr', () => {
    const lr = cosineSchedule(1, 101, { minLr: 0.1 }); // 101 steps: 0..100
    expect(lr(0)).toBeCloseTo(1, 12);
    expect(lr(50)).toBeCloseTo(0.55, 12);
    expect(lr(100)).toBeCloseTo(0.1, 12);
  });

  it('one-cycle starts at max/25, peaks at max, ends near zero', () => {
    const lr = oneCycleSchedule(0.003, 100);
    expect(lr(0)).toBeCloseTo(0.003 / 25, 12);
    expect(Math.max(...Array.from({ length: 100 }, (_, i) => lr(i)))).toBeCloseTo(0.003, 12);
    expect(lr(99)).toBeCloseTo(0.003 / 25 / 1e4, 12);
  });
});
