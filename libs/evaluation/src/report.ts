/** Plain-text tables of scoring results for the terminal. */
import type { DefinitionCriteria } from './definition.js';
import type { ImageResult, ScoreFilesResult } from './score-files.js';

/** Format a number for a table cell: 4 decimals, `inf`/`-` for non-finite/missing. */
export function cell(x: number | undefined, digits = 4): string {
  if (x === undefined) return '-';
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  return x.toFixed(digits);
}

/** Left-align the first column, right-align the rest. */
export function renderTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (r: string[]) => r.map((v, c) => (c === 0 ? v.padEnd(widths[c]) : v.padStart(widths[c]))).join('  ');
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(header), rule, ...rows.map(line)].join('\n');
}

/** Per-image rows and a summary row for the requested metrics. */
export function scoreTable(result: ScoreFilesResult): string {
  const m = new Set(result.metrics);
  const cols: { title: string; image: (r: ImageResult) => string; summary: string }[] = [];
  const s = result.summary;
  if (m.has('f1')) {
    cols.push({ title: 'F1', image: (r) => cell(r.f1), summary: cell(s.f1) });
    cols.push({ title: 'precision', image: (r) => cell(r.precision), summary: cell(s.precision) });
    cols.push({ title: 'recall', image: (r) => cell(r.recall), summary: cell(s.recall) });
    if (result.protocol === 'pixel') cols.push({ title: 'IoU', image: (r) => cell(r.iou), summary: cell(s.iou) });
  }
  if (m.has('vrand')) cols.push({ title: 'V_Rand', image: (r) => cell(r.vRand), summary: cell(s.vRand) });
  if (m.has('vinfo')) cols.push({ title: 'V_Info', image: (r) => cell(r.vInfo), summary: cell(s.vInfo) });
  if (m.has('randerror')) cols.push({ title: 'Rand err', image: (r) => cell(r.randError), summary: cell(s.randError) });
  if (m.has('assd')) {
    cols.push({ title: 'ASSD px', image: (r) => cell(r.assd?.assd, 3), summary: cell(s.assd, 3) });
    cols.push({ title: 'ASSD nm', image: (r) => cell(r.assd?.assdNm, 2), summary: cell(s.assdNm, 2) });
  }
  if (s.rejected) cols.push({ title: 'U-RISC', image: (r) => (r.rejected ? 'REJECTED' : 'ok'), summary: `${s.rejected} rejected` });
  const header = ['image', ...cols.map((c) => c.title)];
  const rows = result.images.map((r) => [r.name, ...cols.map((c) => c.image(r))]);
  const label = result.images.length > 1 ? `mean of ${result.images.length}` : 'score';
  rows.push([label, ...cols.map((c) => c.summary)]);
  const reasons = result.images.flatMap((r) => (r.rejected ? [`rejected (F1 0): ${r.rejected}`] : []));
  const notes: string[] = [];
  if (m.has('f1')) {
    notes.push(
      result.protocol === 'urisc'
        ? `F1: official U-RISC F1 (mean of per-image F${s.rejected ? ', rejected predictions counting 0' : ''})`
        : 'F1: pixel protocol, membrane = grey < 128 (mean of per-image F)',
    );
  }
  if (s.vRandThreshold !== undefined) notes.push(`V_Rand best at threshold ${s.vRandThreshold.toFixed(1)}`);
  if (s.vInfoThreshold !== undefined) notes.push(`V_Info best at threshold ${s.vInfoThreshold.toFixed(1)}`);
  if (m.has('assd')) notes.push(`ASSD nm at ${result.pixelSizeNm} nm/pixel`);
  return [renderTable(header, rows), notes.join('; '), ...reasons].join('\n');
}

/** Rows of definition criteria (per-pixel means and sums). */
export function definitionTable(rows: { name: string; criteria: DefinitionCriteria }[]): string {
  return renderTable(
    ['image', 'Brenner/px', 'SMD2/px', 'Variance/px', 'Vollath/px', 'Brenner', 'SMD2', 'Variance', 'Vollath'],
    rows.map(({ name, criteria: c }) => [
      name,
      cell(c.brennerMean, 3),
      cell(c.smd2Mean, 3),
      cell(c.varianceMean, 3),
      cell(c.vollathMean, 3),
      c.brenner.toExponential(4),
      c.smd2.toExponential(4),
      c.variance.toExponential(4),
      c.vollath.toExponential(4),
    ]),
  );
}
