/**
 * The U-RISC task module's output rules: the binary submission draws membrane black, and a
 * submission the official scorer would reject is named with the reason.
 */
import { describe, expect, it } from 'vitest';
import { submissionProblem, toSubmission } from '../src/tasks/urisc.js';

describe('U-RISC outputs', () => {
  it('draws membrane (p >= threshold) black 0 and the rest white 255', () => {
    const sub = toSubmission(Float32Array.of(0.9, 0.5, 0.49, 0), 4, 1, 0.5);
    expect(Array.from(sub.data)).toEqual([0, 0, 255, 255]);
    expect(sub.bitDepth).toBe(8);
  });

  it('says why the official scorer would reject a submission', () => {
    const mostlyMembrane = { data: Uint8Array.from({ length: 100 }, (_, i) => (i < 30 ? 0 : 255)) };
    expect(submissionProblem(mostlyMembrane, 'out/a.png')).toMatch(/out\/a.png: background\/membrane ratio is 2.333 .* below 5/);
    expect(submissionProblem({ data: Uint8Array.from({ length: 100 }, (_, i) => (i < 10 ? 0 : 255)) }, 'ok.png')).toBeNull();
  });
});
