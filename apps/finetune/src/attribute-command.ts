/**
 * The `attribute` command: integrated gradients of a segmenter's output at chosen pixels and the
 * attribution field S_k of the U-RISC paper (see attribution.ts), tracked as an MLflow run.
 *
 * Pixels are given (`--pixels "x,y;x,y"`) or, with `--label`, sampled per class (true positives,
 * false positives, false negatives of the model's own thresholded prediction). Each pixel is
 * attributed inside a window around it (`--window`, clipped at the image borders) read alone from
 * the file, so memory stays bounded on 10k x 10k images (per-class sampling predicts the whole image
 * once: one Float32 map of it). `--compare SPEC.json` runs several (model, image) entries with the
 * same settings and tabulates mean S_k per class side by side (the paper's U-RISC vs ISBI 2012).
 *
 * Out folder: heatmaps/<entry>/<class>-x<x>-y<y>.png, attributions.csv|json (per pixel and per
 * class), sk-boxplot.png|svg, and with --compare compare.csv|json and compare-boxplot.png|svg.
 * Exit codes: 0 done, 1 bad input or failed, 130 stopped by SIGINT/SIGTERM (results so far written).
 */
import { readFileSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { EXIT } from '@emseg/config';
import {
  DataError,
  ensureDefaultData,
  labelToMask,
  readImage,
  readImageInfo,
  toFloatImage,
  type ImageInfo,
  type LabelPolarity,
  type Mask,
  type Rect,
} from '@emseg/data';
import { writeFileAtomic, writeJsonAtomic } from '@emseg/fs';
import { backendTags, tf } from '@emseg/tf';
import { runUiLink, Tracker, type TrackedRun } from '@emseg/tracking';
import { gracefulStop, ProgressBar, type GracefulStop } from '@emseg/training';
import {
  AttributionStopped,
  CLASS_NAMES,
  attributionAreas,
  attributionWindow,
  cutEdgeMax,
  integratedGradients,
  makeBaseline,
  normalizeField,
  pixelTarget,
  samplePixels,
  summarizeAreas,
  type AttributionArea,
  type AttributionTarget,
  type BaselineKind,
  type ClassSummary,
  type PixelClass,
} from './attribution.js';
import { fittingTiling, predictImage, Segmenter, TILE_MULTIPLE, type InferenceOptions } from '@emseg/segmentation';
import { writeAreaBoxPlot, writeHeatmapPng, type AreaPoint } from './plots.js';
import { checkWritableFolder } from './predict.js';
import { locateModel } from './model-source.js';

/** The command line: the shared settings (`--k` spells `ks`) plus one entry's flags or a --compare spec. */
export interface AttributeArgs extends Omit<AttributionSettings, 'ks'> {
  model?: string;
  image?: string;
  label?: string;
  pixels?: string;
  perClass: number;
  k: string;
  pixelSize: number;
  compare?: string;
  out: string;
  experiment: string;
  runName?: string;
}

/** One (model, image) to attribute; the single-model command is one entry, --compare several. */
export interface AttributionEntry {
  name: string;
  model?: string;
  image: string;
  label?: string;
  pixels?: string;
  pixelSize: number;
  perClass: number;
}

/** Settings shared by every entry. */
export interface AttributionSettings {
  seed: number;
  polarity: LabelPolarity;
  threshold?: number;
  baseline: BaselineKind;
  blurSigma: number;
  steps: number;
  batch: number;
  target: AttributionTarget;
  window: number;
  ks: number[];
  trackingUri?: string;
}

/** One attributed pixel: where, what the model said, and its S_k. */
export interface PixelRecord {
  entry: string;
  x: number;
  y: number;
  cls: PixelClass | 'chosen';
  window: Rect;
  /** Membrane probability at the pixel, predicted on the window. */
  probability: number;
  /** F(x), F(x') and sum of attributions (completeness: sum = F(x) - F(x')). */
  target: number;
  baselineTarget: number;
  attributionSum: number;
  /** |sum - (F(x) - F(x'))| / |F(x) - F(x')|. */
  completenessError: number;
  maxAbs: number;
  /** Largest |normalised attribution| on window edges inside the image: above k, the window cut the field. */
  edgeMaxAbs: number;
  areas: AttributionArea[];
  heatmap: string;
}

export interface EntryResult {
  entry: AttributionEntry;
  modelDir: string;
  modelRunId: string | null;
  records: PixelRecord[];
  summary: ClassSummary[];
  stopped: boolean;
}

const log = (m: string) => process.stderr.write(`${m}\n`);

/** `"x,y;x,y"` -> pixels; `flag` names the option in errors. */
export function parsePixels(text: string, flag = '--pixels'): Array<{ x: number; y: number }> {
  const out = text
    .split(';')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((pair) => {
      const m = /^(\d+)\s*,\s*(\d+)$/.exec(pair);
      if (!m) throw new Error(`${flag}: "${pair}" is not a pixel "x,y" of whole numbers (write several as "x,y;x,y")`);
      return { x: Number(m[1]), y: Number(m[2]) };
    });
  if (out.length === 0) throw new Error(`${flag} names no pixel: write "x,y;x,y"`);
  return out;
}

/** `"0.01,0.05"` -> thresholds in (0, 1). */
export function parseKs(text: string): number[] {
  const ks = text.split(',').map((s) => Number(s.trim()));
  for (const k of ks) if (!(k > 0 && k < 1)) throw new Error(`--k: every threshold must be a number in (0, 1) (normalised attribution), got "${text}"`);
  return [...new Set(ks)];
}

/** Membrane probabilities of one window (any multiple-of-32 size). */
function windowProbability(segmenter: Segmenter, window: Float32Array, width: number, height: number): Float32Array {
  const p = tf.tidy(() => tf.sigmoid(segmenter.forward(tf.tensor4d(window, [1, height, width, 1]), false)));
  try {
    return Float32Array.from(p.dataSync());
  } finally {
    p.dispose();
  }
}

async function checkImage(path: string, flag: string): Promise<ImageInfo> {
  try {
    return await readImageInfo(path);
  } catch (err) {
    throw new Error(`${flag}: ${(err as Error).message}`);
  }
}

/** Pixels sampled per class from the model's prediction of the whole image against the label. */
async function sampledPixels(
  segmenter: Segmenter,
  entry: AttributionEntry,
  info: ImageInfo,
  settings: AttributionSettings,
  threshold: number,
  stop: GracefulStop,
): Promise<Array<{ x: number; y: number; cls: PixelClass }>> {
  const saved = segmenter.loadedInfo!.inference;
  let inference: InferenceOptions = { ...saved, flipTta: false };
  if (info.width < saved.tileSize || info.height < saved.tileSize) {
    const fit = fittingTiling(Math.min(info.width, info.height), saved.overlap);
    if (!fit) throw new DataError(entry.image, `is ${info.width} x ${info.height} pixels`, `an image of at least ${TILE_MULTIPLE} x ${TILE_MULTIPLE} pixels`);
    inference = { ...inference, ...fit };
  }
  log(
    `${entry.name}: predicting the whole image (${info.width} x ${info.height}, tiles ${inference.tileSize}) to sample true/false positives and false negatives at threshold ${threshold}`,
  );
  const image = await readImage(entry.image);
  const probability = await predictImage(segmenter, image, inference, entry.image, undefined, stop);
  const predicted: Mask = { width: info.width, height: info.height, data: Uint8Array.from(probability, (p) => (p >= threshold ? 1 : 0)) };
  const label = await readImage(entry.label!);
  const truth = labelToMask(label, settings.polarity, label.bitDepth === 16 ? 32768 : 128);
  const picked = samplePixels(predicted, truth, entry.perClass, settings.seed);
  const counts = Object.fromEntries((['tp', 'fp', 'fn'] as const).map((c) => [c, picked.filter((p) => p.cls === c).length]));
  log(
    `${entry.name}: sampled ${counts.tp} true positive, ${counts.fp} false positive, ${counts.fn} false negative pixel(s) (--per-class ${entry.perClass}, --seed ${settings.seed})`,
  );
  return picked;
}

const slug = (s: string) => s.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '') || 'entry';

/**
 * Attributes the pixels of one entry: loads its model, picks the pixels, runs IG per pixel in its
 * window, writes a heat map each. Stops between IG batches when `stop` is requested.
 */
export async function attributeEntry(
  entry: AttributionEntry,
  settings: AttributionSettings,
  outDir: string,
  stop: GracefulStop,
  flags: { model: string; image: string; label: string },
): Promise<EntryResult> {
  const info = await checkImage(entry.image, flags.image);
  let labelInfo: ImageInfo | null = null;
  if (entry.label) {
    labelInfo = await checkImage(entry.label, flags.label);
    if (labelInfo.width !== info.width || labelInfo.height !== info.height)
      throw new Error(
        `${flags.label} ${entry.label} is ${labelInfo.width} x ${labelInfo.height}, the image ${entry.image} ${info.width} x ${info.height}: they must be the same size`,
      );
  }
  const chosen = entry.pixels ? parsePixels(entry.pixels).map((p) => ({ ...p, cls: 'chosen' as const })) : null;
  if (!chosen && !entry.label)
    throw new Error(
      `${entry.name}: name the pixels to attribute (--pixels "x,y;x,y") or give a label (--label) to sample true/false positives and false negatives`,
    );
  for (const p of chosen ?? [])
    if (p.x >= info.width || p.y >= info.height)
      throw new Error(`--pixels: (${p.x}, ${p.y}) is outside the ${info.width} x ${info.height} image ${entry.image}`);
  if (!attributionWindow(0, 0, info.width, info.height, settings.window))
    throw new DataError(entry.image, `is ${info.width} x ${info.height} pixels`, `an image of at least ${TILE_MULTIPLE} x ${TILE_MULTIPLE} pixels`);

  const modelDir = await locateModel(entry.model, settings.trackingUri, flags.model);
  let segmenter: Segmenter;
  try {
    segmenter = Segmenter.load(modelDir);
  } catch (err) {
    throw new Error(`${flags.model} ${modelDir}: ${(err as Error).message}`);
  }
  try {
    const model = segmenter.loadedInfo!;
    const threshold = settings.threshold ?? model.threshold;
    log(
      `${entry.name}: ${model.architecture} U-Net from ${modelDir} (step ${model.step}, validation F1 ${model.valF1?.toFixed(4) ?? 'n/a'}, threshold ${threshold})`,
    );
    const pixels = chosen ?? (await sampledPixels(segmenter, entry, info, settings, threshold, stop));
    const records: PixelRecord[] = [];
    const heatmapDir = join(outDir, 'heatmaps', slug(entry.name));
    const bar = new ProgressBar({ label: `attribute ${entry.name}`, total: pixels.length, unit: 'px' });
    let stopped = false;
    let cut = 0;
    try {
      for (const p of pixels) {
        if (stop.requested) {
          stopped = true;
          break;
        }
        const rect = attributionWindow(p.x, p.y, info.width, info.height, settings.window)!;
        const window = toFloatImage(await readImage(entry.image, { region: rect })).data;
        const baseline = makeBaseline(window, rect.width, rect.height, settings.baseline, { mean: model.normalization.mean[0], blurSigma: settings.blurSigma });
        const lx = p.x - rect.x;
        const ly = p.y - rect.y;
        let ig;
        try {
          ig = await integratedGradients(pixelTarget(segmenter, lx, ly, settings.target), window, baseline, rect.height, rect.width, {
            steps: settings.steps,
            batch: settings.batch,
            stop,
          });
        } catch (err) {
          if (err instanceof AttributionStopped) {
            stopped = true;
            break;
          }
          throw err;
        }
        const { field, maxAbs } = normalizeField(ig.attribution);
        const areas = attributionAreas(field, settings.ks, entry.pixelSize);
        const edgeMaxAbs = cutEdgeMax(field, rect, info.width, info.height);
        if (edgeMaxAbs > Math.min(...settings.ks)) cut++;
        const probability = windowProbability(segmenter, window, rect.width, rect.height);
        const label = entry.label
          ? labelToMask(await readImage(entry.label, { region: rect }), settings.polarity, labelInfo!.bitDepth === 16 ? 32768 : 128).data
          : undefined;
        const heatmap = join(heatmapDir, `${p.cls}-x${p.x}-y${p.y}.png`);
        const difference = ig.target - ig.baselineTarget;
        const first = areas[0]!;
        await writeHeatmapPng(heatmap, {
          image: window,
          probability,
          label,
          field,
          width: rect.width,
          height: rect.height,
          x: lx,
          y: ly,
          caption: `${entry.name} (${p.x}, ${p.y}) ${CLASS_NAMES[p.cls]}: p = ${probability[ly * rect.width + lx].toFixed(3)}; S_${first.k} = ${first.pixels} px = ${Math.round(first.nm2)} nm² at ${entry.pixelSize} nm/px; ${settings.target} ${ig.target.toFixed(3)} vs baseline ${ig.baselineTarget.toFixed(3)}`,
        });
        records.push({
          entry: entry.name,
          x: p.x,
          y: p.y,
          cls: p.cls,
          window: rect,
          probability: probability[ly * rect.width + lx],
          target: ig.target,
          baselineTarget: ig.baselineTarget,
          attributionSum: ig.sum,
          completenessError: Math.abs(ig.sum - difference) / Math.max(Math.abs(difference), 1e-12),
          maxAbs,
          edgeMaxAbs,
          areas,
          heatmap,
        });
        bar.tick(1, { [`S_${first.k}_nm2`]: first.nm2 });
      }
    } finally {
      bar.done(stopped ? '(stopped)' : '');
    }
    if (cut > 0)
      log(
        `warning: ${entry.name}: the attribution field of ${cut} of ${records.length} pixel(s) still exceeds k = ${Math.min(...settings.ks)} on the window's edge (column edge_max_abs): S_k undercounts there; use a larger --window (now ${settings.window})`,
      );
    return { entry, modelDir, modelRunId: model.mlflowRunId, records, summary: summarizeAreas(records, settings.ks), stopped };
  } finally {
    segmenter.dispose();
  }
}

const csvCell = (v: unknown) => {
  const s = String(v);
  return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
};

/** Per-pixel rows, then per-class summary rows (pixel columns empty). */
export function attributionsCsv(results: readonly EntryResult[], ks: readonly number[]): string {
  const kCols = ks.flatMap((k) => [`s_k${k}_px`, `s_k${k}_nm2`]);
  const head = [
    'row',
    'entry',
    'class',
    'x',
    'y',
    'window_x',
    'window_y',
    'window_w',
    'window_h',
    'probability',
    'target',
    'baseline_target',
    'attribution_sum',
    'completeness_error',
    'max_abs',
    'edge_max_abs',
    ...kCols,
    'heatmap',
  ];
  const rows = [head.join(',')];
  for (const r of results.flatMap((e) => e.records)) {
    rows.push(
      [
        'pixel',
        r.entry,
        r.cls,
        r.x,
        r.y,
        r.window.x,
        r.window.y,
        r.window.width,
        r.window.height,
        r.probability,
        r.target,
        r.baselineTarget,
        r.attributionSum,
        r.completenessError,
        r.maxAbs,
        r.edgeMaxAbs,
        ...r.areas.flatMap((a) => [a.pixels, a.nm2]),
        r.heatmap,
      ]
        .map(csvCell)
        .join(','),
    );
  }
  rows.push('');
  rows.push(['row', 'entry', 'class', 'k', 'n', 'mean_px', 'mean_nm2', 'std_nm2'].join(','));
  for (const e of results)
    for (const s of e.summary) rows.push(['class', e.entry.name, s.cls, s.k, s.n, s.meanPixels, s.meanNm2, s.stdNm2].map(csvCell).join(','));
  return `${rows.join('\n')}\n`;
}

/** The --compare table: mean +- std of S_k (nm^2) per class (rows) and entry (columns). */
export function compareTable(results: readonly EntryResult[], ks: readonly number[]): string {
  const classes = [...new Set(results.flatMap((e) => e.summary.map((s) => s.cls)))];
  const head = ['class', 'k', ...results.map((e) => `${e.entry.name} (${e.entry.pixelSize} nm/px)`)];
  const rows: string[][] = [];
  for (const cls of classes) {
    for (const k of ks) {
      rows.push([
        CLASS_NAMES[cls],
        String(k),
        ...results.map((e) => {
          const s = e.summary.find((x) => x.cls === cls && x.k === k);
          return s ? `${Math.round(s.meanNm2)} ± ${Math.round(s.stdNm2)} nm² (n ${s.n})` : '-';
        }),
      ]);
    }
  }
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

const metricClass = (cls: string) => cls;

/** Mean/std/n of S_k per class as MLflow metrics (prefix for compare entries). */
function summaryMetrics(summary: readonly ClassSummary[], prefix = ''): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of summary) {
    out[`${prefix}sk_nm2_mean_${metricClass(s.cls)}_k${s.k}`] = s.meanNm2;
    out[`${prefix}sk_nm2_std_${metricClass(s.cls)}_k${s.k}`] = s.stdNm2;
    out[`${prefix}sk_px_mean_${metricClass(s.cls)}_k${s.k}`] = s.meanPixels;
    out[`${prefix}n_${metricClass(s.cls)}`] = s.n;
  }
  return out;
}

interface CompareSpec {
  entries: Array<Partial<AttributionEntry>>;
}

/** Reads a --compare spec: `{"entries": [{"name", "model", "image", "label"?, "pixels"?, "pixelSize"?, "perClass"?}, ...]}` (or the array alone). */
export function readCompareSpec(path: string, defaults: { pixelSize: number; perClass: number }): AttributionEntry[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`--compare ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  const list = Array.isArray(raw) ? raw : (raw as CompareSpec)?.entries;
  if (!Array.isArray(list) || list.length < 2)
    throw new Error(`--compare ${path}: expected {"entries": [...]} with at least two {"name", "model", "image", "label"} entries`);
  const base = dirname(resolve(path));
  const at = (p: string | undefined) => (p === undefined ? undefined : p.startsWith('runs:') ? p : resolve(base, p));
  const names = new Set<string>();
  return list.map((e: Partial<AttributionEntry>, i) => {
    const where = `--compare ${path}: entries[${i}]`;
    if (typeof e?.image !== 'string') throw new Error(`${where}: "image" (a file path, relative to the spec) is required`);
    if (e.model !== undefined && typeof e.model !== 'string') throw new Error(`${where}: "model" must be a path or runs:/ URI`);
    const name = typeof e.name === 'string' && e.name ? e.name : basename(e.image, extname(e.image));
    if (names.has(name)) throw new Error(`${where}: the name "${name}" is used twice; give each entry its own "name"`);
    names.add(name);
    const pixelSize = e.pixelSize ?? defaults.pixelSize;
    if (!(typeof pixelSize === 'number' && pixelSize > 0)) throw new Error(`${where}: "pixelSize" must be nm per pixel > 0`);
    const perClass = e.perClass ?? defaults.perClass;
    if (!(Number.isInteger(perClass) && perClass >= 1)) throw new Error(`${where}: "perClass" must be a whole number >= 1`);
    return { name, model: at(e.model), image: at(e.image)!, label: at(e.label), pixels: e.pixels, pixelSize, perClass };
  });
}

function checkArgs(a: AttributeArgs): void {
  if (!(Number.isInteger(a.window) && a.window >= TILE_MULTIPLE && a.window % TILE_MULTIPLE === 0))
    throw new Error(`--window must be a positive multiple of ${TILE_MULTIPLE} (the U-Net's input), got ${a.window}`);
  if (!(Number.isInteger(a.steps) && a.steps >= 1)) throw new Error(`--steps must be a whole number >= 1, got ${a.steps}`);
  if (!(Number.isInteger(a.batch) && a.batch >= 1)) throw new Error(`--batch must be a whole number >= 1, got ${a.batch}`);
  if (!(Number.isInteger(a.perClass) && a.perClass >= 1)) throw new Error(`--per-class must be a whole number >= 1, got ${a.perClass}`);
  if (!(a.pixelSize > 0)) throw new Error(`--pixel-size must be nm per pixel > 0, got ${a.pixelSize}`);
  if (!(a.blurSigma > 0)) throw new Error(`--blur-sigma must be > 0 pixels, got ${a.blurSigma}`);
  if (a.threshold !== undefined && !(a.threshold >= 0 && a.threshold <= 1)) throw new Error(`--threshold must be a probability in [0, 1], got ${a.threshold}`);
  if (!Number.isInteger(a.seed) || a.seed < 1) throw new Error(`--seed must be a whole number >= 1, got ${a.seed}`);
  if (a.compare && (a.image || a.model || a.label || a.pixels))
    throw new Error('--compare takes models, images and labels from its spec file: drop --model/--image/--label/--pixels');
  if (a.pixels) parsePixels(a.pixels);
}

/** Runs `attribute`; returns the exit code (0 done, 130 stopped); bad input throws. */
export async function attribute(args: AttributeArgs): Promise<number> {
  checkArgs(args);
  if (!args.compare && !args.image) {
    const data = await ensureDefaultData();
    const split = data.urisc.splits.test;
    const [image, label] = [join(split.images, `${split.names[0]}.png`), join(split.labels, `${split.names[0]}.tiff`)];
    log(`image: the embedded synthetic test image ${image}${args.pixels ? '' : ` (label ${label})`}`);
    args = { ...args, image, label: args.pixels ? args.label : (args.label ?? label) };
  }
  const ks = parseKs(args.k);
  const settings: AttributionSettings = {
    seed: args.seed,
    polarity: args.polarity,
    threshold: args.threshold,
    baseline: args.baseline,
    blurSigma: args.blurSigma,
    steps: args.steps,
    batch: args.batch,
    target: args.target,
    window: args.window,
    ks,
    trackingUri: args.trackingUri,
  };
  const entries: AttributionEntry[] = args.compare
    ? readCompareSpec(args.compare, { pixelSize: args.pixelSize, perClass: args.perClass })
    : [
        {
          name: basename(args.image!, extname(args.image!)),
          model: args.model,
          image: args.image!,
          label: args.label,
          pixels: args.pixels,
          pixelSize: args.pixelSize,
          perClass: args.perClass,
        },
      ];
  const out = resolve(args.out);
  await checkWritableFolder(out);
  for (const [i, e] of entries.entries()) {
    const flag = args.compare ? `--compare entries[${i}].` : '--';
    const info = await checkImage(e.image, `${flag}image`);
    if (e.label) await checkImage(e.label, `${flag}label`);
    for (const p of e.pixels ? parsePixels(e.pixels, `${flag}pixels`) : [])
      if (p.x >= info.width || p.y >= info.height)
        throw new Error(`${flag}pixels: (${p.x}, ${p.y}) is outside the ${info.width} x ${info.height} image ${e.image}`);
  }

  const runName =
    args.runName ?? `attribution-${args.compare ? 'compare' : slug(entries[0].name)}-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}`;
  const run: TrackedRun = await Tracker.start({
    trackingUri: args.trackingUri,
    experiment: args.experiment,
    runName,
    handleProcessEvents: false,
    description: `Integrated gradients (${args.steps} steps, ${args.baseline} baseline, ${args.target}) and attribution field S_k (k = ${ks.join(', ')}) of ${entries.map((e) => `${e.name} (${e.image})`).join(' vs ')}`,
    tags: { ...backendTags(), 'emseg.app': 'attribution', 'emseg.outDir': out },
    params: {
      baseline: args.baseline,
      steps: args.steps,
      batch: args.batch,
      target: args.target,
      window: args.window,
      k: ks.join(','),
      seed: args.seed,
      polarity: args.polarity,
      ...(args.baseline === 'blur' ? { blurSigma: args.blurSigma } : {}),
      ...(args.threshold !== undefined ? { threshold: args.threshold } : {}),
      ...Object.fromEntries(
        entries.flatMap((e, i) => {
          const p = entries.length === 1 ? '' : `entry${i}.`;
          return [
            [`${p}name`, e.name],
            [`${p}image`, e.image],
            [`${p}label`, e.label ?? 'none'],
            [`${p}model`, e.model ?? 'latest'],
            [`${p}pixelSize`, e.pixelSize],
            [`${p}perClass`, e.pixels ? 'none' : e.perClass],
            [`${p}pixels`, e.pixels ?? 'sampled'],
          ];
        }),
      ),
    },
  });
  log(`MLflow run ${run.id} in experiment "${args.experiment}" at ${run.client.trackingUri}`);
  let signals = 0;
  const stop = gracefulStop({
    log: (m) =>
      log(
        `\n${signals++ === 0 ? `${stop.signal ?? 'signal'} received: stopping after the current integration batch; the pixels attributed so far are written and logged (send it again to exit at once)` : m}`,
      ),
  });
  const results: EntryResult[] = [];
  try {
    for (const [i, entry] of entries.entries()) {
      if (stop.requested) break;
      const prefix = args.compare ? `--compare entries[${i}].` : '--';
      const result = await attributeEntry(entry, settings, out, stop, { model: `${prefix}model`, image: `${prefix}image`, label: `${prefix}label` });
      results.push(result);
      const p = entries.length === 1 ? '' : `entry${i}.`;
      run.setTags({ [`emseg.${p}model`]: result.modelDir, ...(result.modelRunId ? { [`emseg.${p}model.runId`]: result.modelRunId } : {}) });
      const link = result.modelRunId ? await runUiLink(run.client, result.modelRunId) : null;
      if (link) run.setTag(`emseg.${p}model.link`, link);
      result.records.forEach((r, step) =>
        run.logMetrics(
          { [`${p}pixel_completeness_error`]: r.completenessError, ...Object.fromEntries(r.areas.map((a) => [`${p}pixel_sk_nm2_k${a.k}`, a.nm2])) },
          step,
        ),
      );
      run.logMetrics(summaryMetrics(result.summary, entries.length === 1 ? '' : `${slug(entry.name)}.`));
      if (result.stopped) break;
    }
    const stopped = stop.requested || results.some((r) => r.stopped);
    const records = results.flatMap((r) => r.records);
    await writeFileAtomic(join(out, 'attributions.csv'), attributionsCsv(results, ks));
    await writeJsonAtomic(join(out, 'attributions.json'), {
      settings: { ...settings, trackingUri: undefined },
      entries: results.map((r) => ({ ...r.entry, modelDir: r.modelDir, modelRunId: r.modelRunId, summary: r.summary, pixels: r.records, stopped: r.stopped })),
    });
    const points: AreaPoint[] = records.flatMap((r) =>
      r.areas.map((a) => ({ cls: CLASS_NAMES[r.cls], k: a.k, nm2: a.nm2, ...(args.compare ? { series: r.entry } : {}) })),
    );
    const figures: string[] = [];
    if (points.length > 0) {
      const title = `Attribution field S_k (${args.target}, ${args.steps} IG steps, ${args.baseline} baseline)`;
      figures.push((await writeAreaBoxPlot(join(out, args.compare ? 'compare-boxplot' : 'sk-boxplot'), points, title)).png);
    }
    const table = compareTable(results, ks);
    if (args.compare) {
      await writeFileAtomic(join(out, 'compare.txt'), `${table}\n`);
      await writeJsonAtomic(
        join(out, 'compare.json'),
        results.map((r) => ({ name: r.entry.name, pixelSize: r.entry.pixelSize, modelDir: r.modelDir, modelRunId: r.modelRunId, summary: r.summary })),
      );
    }
    await run.logArtifacts(out, '');
    const completeness = records.length ? Math.max(...records.map((r) => r.completenessError)) : NaN;
    if (records.length) run.logMetrics({ completeness_error_max: completeness, pixels: records.length });
    process.stdout.write(
      [
        `mean S_k per class (${records.length} pixel(s); completeness error max ${(completeness * 100).toFixed(2)}% of F(x) - F(x')):`,
        table,
        `heat maps:  ${join(out, 'heatmaps')}`,
        `tables:     ${join(out, 'attributions.csv')}, ${join(out, 'attributions.json')}${args.compare ? `, ${join(out, 'compare.txt')}` : ''}`,
        ...(figures.length ? [`box plot:   ${figures.join(', ')}`] : []),
        `MLflow run: ${run.id} at ${run.client.trackingUri}${stopped ? ' (stopped: KILLED)' : ''}`,
        '',
      ].join('\n'),
    );
    await run.end(stopped ? 'KILLED' : 'FINISHED');
    return stopped ? EXIT.interrupted : EXIT.ok;
  } catch (err) {
    await run.end('FAILED', { reason: (err as Error).message });
    throw err;
  } finally {
    stop.dispose();
  }
}
