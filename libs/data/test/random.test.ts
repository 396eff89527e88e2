import { describe, expect, it } from 'vitest';
import { Rng, deriveSeed } from '@emseg/data';

describe('Rng', () => {
  it('repeats its sequence for a seed and differs between seeds', () => {
    const a = Array.from({ length: 5 }, (_, __, r = new Rng(1)) => r.next());
    const seq = (seed: number) => {
      const r = new Rng(seed);
      return Array.from({ length: 20 }, () => r.nextU32());
    };
    expect(seq(1)).toEqual(seq(1));
    expect(seq(1)).not.toEqual(seq(2));
    expect(a.every((v) => v >= 0 && v < 1)).toBe(true);
  });

  it('has roughly the right moments', () => {
    const r = new Rng(9);
    const n = 20000;
    const u = Array.from({ length: n }, () => r.next());
    const g = Array.from({ length: n }, () => r.normal(2, 3));
    const mean = (xs: number[]) => xs.reduce((s, v) => s + v, 0) / xs.length;
    expect(mean(u)).toBeCloseTo(0.5, 1);
    expect(mean(g)).toBeCloseTo(2, 0);
    expect(Math.sqrt(mean(g.map((v) => (v - 2) ** 2)))).toBeCloseTo(3, 0);
  });

  it('permutes 0..n-1', () => {
    const p = Array.from(new Rng(4).permutation(1000));
    expect([...p].sort((a, b) => a - b)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(p).not.toEqual(Array.from({ length: 1000 }, (_, i) => i));
  });

  it('derives distinct seeds from distinct parts', () => {
    const seeds = new Set<number>();
    for (let epoch = 0; epoch < 10; epoch++) for (let i = 0; i < 100; i++) for (let v = 0; v < 2; v++) seeds.add(deriveSeed(42, epoch, i, v));
    expect(seeds.size).toBe(2000);
    expect(deriveSeed(1, 2)).not.toBe(deriveSeed(2, 1));
    expect(() => deriveSeed(Number.NaN)).toThrow(/not a finite number/);
  });
});
