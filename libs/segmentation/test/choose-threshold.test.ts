/**
 * Threshold choice at validation: the best mean task F1 wins, ties go to the configured threshold's
 * nearest neighbour, and the schema's default candidates are 0.1 ... 0.9 unless a config says [].
 */
import { describe, expect, it } from 'vitest';
import { chooseThreshold, type ThresholdScore } from '@emseg/segmentation';
import { DEFAULT_VALIDATION_THRESHOLDS } from '../src/config.js';

const at = (threshold: number, score: number, f1 = score): ThresholdScore => ({ threshold, score, f1, precision: f1, recall: f1, rejected: 0 });

describe('chooseThreshold', () => {
  it('takes the threshold with the best mean F1', () => {
    expect(chooseThreshold([at(0.3, 0.61), at(0.4, 0.72), at(0.5, 0.7), at(0.6, 0.5)], 0.5).threshold).toBe(0.4);
  });

  it("compares the task's metric (score), not F1, when they differ", () => {
    expect(chooseThreshold([at(0.3, 0.6, 0.9), at(0.5, 0.7, 0.5)], 0.5).threshold).toBe(0.5);
  });

  it('breaks ties by nearness to the configured threshold, then by the lower threshold', () => {
    expect(chooseThreshold([at(0.2, 0.8), at(0.4, 0.8), at(0.5, 0.7), at(0.7, 0.8)], 0.5).threshold).toBe(0.4);
    expect(chooseThreshold([at(0.3, 0.8), at(0.5, 0.6), at(0.7, 0.8)], 0.5).threshold).toBe(0.3);
    // all rejected (F1 0 everywhere): the configured threshold stays
    expect(chooseThreshold([at(0.1, 0), at(0.5, 0), at(0.9, 0)], 0.5).threshold).toBe(0.5);
  });

  it('has 0.1 ... 0.9 as the default candidates', () => {
    expect(DEFAULT_VALIDATION_THRESHOLDS.map((t) => t.toFixed(10))).toEqual([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9].map((t) => t.toFixed(10)));
  });
});
