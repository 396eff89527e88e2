/**
 * A synthetic mitochondria task (issue 12: any EM task, 2D or 3D), labelled per instance.
 *
 * Geometry: mitochondria are ellipses (2D) or ellipsoids (3D: a few slices deep, drifting a little
 * in x/y from slice to slice, so one instance continues across z with the same id), placed
 * without touching (at least 2 px apart, and a slice apart in z) until about `foreground` (8%) of
 * the pixels are covered. Each instance is one 4-connected region (6-connected in 3D): a stray
 * pixel the raster cuts off a thin tip is dropped from the label and the image alike.
 * Appearance: a textured EM-like background (value noise at three scales and uneven
 * illumination, varying smoothly along z), unlabelled distractors (dark membrane rings / tubes,
 * dark vesicles, small granules brighter than the mitochondria), and for each mitochondrion a
 * bright body with dark transverse cristae and a less bright rim (outer membrane); then blur and
 * noise. The same options and seed give byte-identical files.
 *
 * Layouts written (the generic labelled layout of issue 12, paired by file stem):
 * - 2D: `DIR/{train,val,test}/{images,masks,instances}/NAME.png` (images 8-bit grey, masks 8-bit
 *   255 = mitochondrion / 0 = background, instances 16-bit ids with 0 = background);
 * - 3D: `DIR/{images,masks,instances}/stack.tif` (multi-page TIFF, one slice per page), or with
 *   `count`, `DIR/{train,val,test}/{images,masks,instances}/NAME.tif`.
 */
import { join, resolve } from 'node:path';
import { publishDirectory, writeJsonAtomic } from '@emseg/fs';
import { DataError } from '../errors.js';
import { gaussianBlur } from '../filters.js';
import { greyImage, type GreyImage, type PixelArray } from '../image.js';
import { writeImage } from '../image-io.js';
import { deriveSeed, Rng } from '../random.js';
import { writeStack } from '../stack-io.js';
import { assertFreshDirectory, imageSize, type UriscSplit } from './generate.js';
import { ValueNoise } from './value-noise.js';

/** Bumped whenever generated pixels change, so cached datasets are regenerated. */
export const SYNTHETIC_MITO_VERSION = 1;

const SPLITS: readonly UriscSplit[] = ['train', 'val', 'test'];
/** Seed salts, so a mito task never shares random streams with the U-RISC generator's seed. */
const SALT_2D = 0x6d17;
const SALT_3D = 0x6d13;
/** Minimum gap between instances: pixels in x/y, slices in z. */
const GAP = 2;
const GAP_Z = 1;
/** Instances smaller than this (cut by the border) are dropped. */
const MIN_VOXELS = 24;
/** Areas at which the distractor counts are given (per 512 x 512 slice). */
const REFERENCE_AREA = 512 * 512;

export interface MitoSceneOptions {
  readonly width: number;
  readonly height: number;
  /** Slices. Default 1: a 2D image with elliptical profiles. */
  readonly depth?: number;
  /** Target fraction of mitochondrion pixels (voxels). Default 0.08. */
  readonly foreground?: number;
}

export interface MitoScene {
  readonly width: number;
  readonly height: number;
  readonly depth: number;
  /** 8-bit grey, slice after slice: `image[z * width * height + y * width + x]`. */
  readonly image: Uint8Array;
  /** Instance id per pixel, same order; 0 = background, ids 1..instanceCount. */
  readonly instances: Uint16Array;
  readonly instanceCount: number;
  /** 1 where a granule (a small bright blob, no cristae) covers a pixel outside the mitochondria, same order. */
  readonly granules: Uint8Array;
}

/** One mitochondrion: an ellipsoid (c = Infinity in 2D) whose centre drifts by (sx, sy) per slice. */
interface Mito {
  id: number;
  x: number;
  y: number;
  z: number;
  cos: number;
  sin: number;
  a: number;
  b: number;
  c: number;
  sx: number;
  sy: number;
  /** Brightness of the body above the background, cristae period and phase. */
  body: number;
  period: number;
  phase: number;
  /** Slices it was kept on (inclusive). */
  z0: number;
  z1: number;
}

/** A round distractor: a ring/tube (membrane) or a blob (vesicle, granule). */
interface Round {
  x: number;
  y: number;
  z: number;
  r: number;
  /** Half-extent in slices (Infinity: the same on every slice). */
  rz: number;
  sx: number;
  sy: number;
}

/** Value noise that also varies smoothly along z: 2D fields on a z-lattice, blended with a smoothstep. */
class VolumeNoise {
  private readonly fields: ValueNoise[];
  private readonly tmp: Float32Array;

  constructor(
    rng: Rng,
    width: number,
    height: number,
    depth: number,
    cell: number,
    private readonly cellZ: number,
  ) {
    const n = depth === 1 ? 1 : Math.ceil((depth - 1) / cellZ) + 2;
    this.fields = Array.from({ length: n }, () => new ValueNoise(rng, width, height, cell));
    this.tmp = new Float32Array(width);
  }

  row(z: number, y: number, out: Float32Array): Float32Array {
    if (this.fields.length === 1) return this.fields[0].row(y, out);
    const g = z / this.cellZ;
    const k = Math.floor(g);
    const f = (g - k) * (g - k) * (3 - 2 * (g - k));
    this.fields[k].row(y, out);
    if (f === 0) return out;
    const next = this.fields[k + 1].row(y, this.tmp);
    for (let x = 0; x < out.length; x++) out[x] += f * (next[x] - out[x]);
    return out;
  }
}

/** A Poisson-like count: the integer part of `mean` plus one with the fractional probability. */
function countFor(rng: Rng, mean: number): number {
  const n = Math.floor(mean);
  return n + (rng.chance(mean - n) ? 1 : 0);
}

/** Half-extents of the axis-aligned box around an ellipse with semi-axes a, b rotated by (cos, sin). */
function ellipseBox(a: number, b: number, cos: number, sin: number): [number, number] {
  return [Math.sqrt((a * cos) ** 2 + (b * sin) ** 2), Math.sqrt((a * sin) ** 2 + (b * cos) ** 2)];
}

/**
 * Calls `visit(index, u, v, a, b)` for each pixel of slice z inside the section of mitochondrion m
 * (grown by `grow` px); (u, v) are along its long and short axes, (a, b) the section's semi-axes.
 */
function forSection(m: Mito, z: number, W: number, H: number, grow: number, visit: (index: number, u: number, v: number, a: number, b: number) => void): void {
  const dz = m.c === Infinity ? 0 : (z - m.z) / m.c;
  if (dz * dz >= 1) return;
  const s = Math.sqrt(1 - dz * dz);
  const a = m.a * s + grow;
  const b = m.b * s + grow;
  const cx = m.x + m.sx * (z - m.z);
  const cy = m.y + m.sy * (z - m.z);
  const [hx, hy] = ellipseBox(a, b, m.cos, m.sin);
  const y0 = Math.max(0, Math.ceil(cy - hy));
  const y1 = Math.min(H - 1, Math.floor(cy + hy));
  const x0 = Math.max(0, Math.ceil(cx - hx));
  const x1 = Math.min(W - 1, Math.floor(cx + hx));
  const ia2 = 1 / (a * a);
  const ib2 = 1 / (b * b);
  const base = z * W * H;
  for (let y = y0; y <= y1; y++) {
    const dy = y - cy;
    for (let x = x0; x <= x1; x++) {
      const dx = x - cx;
      const u = dx * m.cos + dy * m.sin;
      const v = -dx * m.sin + dy * m.cos;
      if (u * u * ia2 + v * v * ib2 <= 1) visit(base + y * W + x, u, v, a, b);
    }
  }
}

/**
 * Keeps the largest connected part (4-connected in a slice, and across neighbouring slices) of the
 * pixels in `cells` labelled `id`, clearing the rest. Returns the pixels kept.
 */
function keepLargestPart(labels: Uint16Array, cells: readonly number[], id: number, W: number, H: number, D: number): number[] {
  const plane = W * H;
  const seen = new Set<number>();
  let best: number[] = [];
  for (const start of cells) {
    if (seen.has(start)) continue;
    const part = [start];
    seen.add(start);
    for (let k = 0; k < part.length; k++) {
      const i = part[k];
      const x = i % W;
      const y = Math.floor(i / W) % H;
      const z = Math.floor(i / plane);
      const near = [x > 0 ? i - 1 : -1, x < W - 1 ? i + 1 : -1, y > 0 ? i - W : -1, y < H - 1 ? i + W : -1, z > 0 ? i - plane : -1, z < D - 1 ? i + plane : -1];
      for (const j of near) {
        if (j >= 0 && labels[j] === id && !seen.has(j)) {
          seen.add(j);
          part.push(j);
        }
      }
    }
    if (part.length > best.length) best = part;
  }
  if (best.length < cells.length) {
    const kept = new Set(best);
    for (const i of cells) if (!kept.has(i)) labels[i] = 0;
  }
  return best;
}

/** Places non-touching mitochondria until `target` pixels are covered (or placement keeps failing). */
function placeMitochondria(rng: Rng, W: number, H: number, D: number, target: number, labels: Uint16Array): Mito[] {
  const scale = Math.min(1, Math.max(0.35, Math.min(W, H) / 256));
  const plane = W * H;
  const mitos: Mito[] = [];
  let covered = 0;
  const expected = target / (Math.PI * 24 * 12 * scale * scale * (D === 1 ? 1 : 4));
  const maxTries = 100 + Math.ceil(40 * expected);
  for (let tries = 0; covered < target && tries < maxTries && mitos.length < 65535; tries++) {
    const angle = rng.uniform(0, Math.PI);
    const a = rng.uniform(14, 34) * scale;
    const m: Mito = {
      id: mitos.length + 1,
      x: rng.uniform(0, W),
      y: rng.uniform(0, H),
      z: D === 1 ? 0 : rng.uniform(0, D - 1),
      cos: Math.cos(angle),
      sin: Math.sin(angle),
      a,
      b: Math.min(a * 0.8, rng.uniform(8, 16) * scale),
      c: D === 1 ? Infinity : rng.uniform(1.5, 4.5),
      sx: D === 1 ? 0 : rng.normal(0, 0.6),
      sy: D === 1 ? 0 : rng.normal(0, 0.6),
      body: rng.uniform(0.17, 0.27),
      period: rng.uniform(5, 8) * Math.max(scale, 0.7),
      phase: rng.uniform(0, 2 * Math.PI),
      z0: 0,
      z1: 0,
    };
    const zLo = D === 1 ? 0 : Math.max(0, Math.floor(m.z - m.c));
    const zHi = D === 1 ? 0 : Math.min(D - 1, Math.ceil(m.z + m.c));
    // Free when nothing lies within GAP px of a section, on its slice or GAP_Z slices above or below.
    let free = true;
    for (let z = zLo; z <= zHi && free; z++) {
      const below = Math.max(0, z - GAP_Z) - z;
      const above = Math.min(D - 1, z + GAP_Z) - z;
      forSection(m, z, W, H, GAP, (i) => {
        for (let dz = below; dz <= above; dz++) if (labels[i + dz * plane] !== 0) free = false;
      });
    }
    if (!free) continue;
    const cells: number[] = [];
    for (let z = zLo; z <= zHi; z++) {
      forSection(m, z, W, H, 0, (i) => {
        labels[i] = m.id;
        cells.push(i);
      });
    }
    const kept = cells.length === 0 ? [] : keepLargestPart(labels, cells, m.id, W, H, D);
    if (kept.length < MIN_VOXELS) {
      for (const i of kept) labels[i] = 0;
      continue;
    }
    m.z0 = D;
    m.z1 = 0;
    for (const i of kept) {
      const z = Math.floor(i / plane);
      if (z < m.z0) m.z0 = z;
      if (z > m.z1) m.z1 = z;
    }
    covered += kept.length;
    mitos.push(m);
  }
  return mitos;
}

function rounds(rng: Rng, n: number, W: number, H: number, D: number, r: () => number, rz: () => number): Round[] {
  return Array.from({ length: n }, () => ({
    x: rng.uniform(0, W),
    y: rng.uniform(0, H),
    z: rng.uniform(0, Math.max(0, D - 1)),
    r: r(),
    rz: D === 1 ? Infinity : rz(),
    sx: D === 1 ? 0 : rng.normal(0, 0.5),
    sy: D === 1 ? 0 : rng.normal(0, 0.5),
  }));
}

/**
 * Calls `visit(x, y, d2 / r^2)` for every pixel of slice z within `reach` radii of round object `o`'s
 * centre there (d2: squared distance in px; r: its radius on that slice), if it crosses the slice.
 */
function forRound(W: number, H: number, o: Round, z: number, reach: number, visit: (x: number, y: number, t2: number) => void): void {
  const dz = o.rz === Infinity ? 0 : (z - o.z) / o.rz;
  if (dz * dz >= 1) return;
  const r = o.r * Math.sqrt(1 - dz * dz);
  if (r < 0.5) return;
  const cx = o.x + o.sx * (z - o.z);
  const cy = o.y + o.sy * (z - o.z);
  const ext = reach * r;
  const ir2 = 1 / (r * r);
  for (let y = Math.max(0, Math.ceil(cy - ext)); y <= Math.min(H - 1, Math.floor(cy + ext)); y++) {
    for (let x = Math.max(0, Math.ceil(cx - ext)); x <= Math.min(W - 1, Math.floor(cx + ext)); x++) {
      const d2 = (x - cx) ** 2 + (y - cy) ** 2;
      if (d2 <= ext * ext) visit(x, y, d2 * ir2);
    }
  }
}

/** Adds `amount * profile((d / r)^2)` around a round object's centre on slice z (d: distance in px, up to `reach` * r). */
function addRound(grey: Float32Array, W: number, H: number, o: Round, z: number, reach: number, amount: number, profile: (t2: number) => number): void {
  forRound(W, H, o, z, reach, (x, y, t2) => (grey[y * W + x] += amount * profile(t2)));
}

/** Where a granule counts as one in class labels: within this many radii (its profile is above ~0.6 there). */
const GRANULE_REACH = 1.2;

/** Sets `out` to 1 on slice z where round `o` reaches (reach radii, as addRound draws it) and no mitochondrion is. */
function markRound(out: Uint8Array, instances: Uint16Array, W: number, H: number, o: Round, z: number, reach: number): void {
  const offset = z * W * H;
  forRound(W, H, o, z, reach, (x, y) => {
    const i = offset + y * W + x;
    if (instances[i] === 0) out[i] = 1;
  });
}

/** Darkens a thin ring (membrane) of radius o.r on slice z: a Gaussian profile of sigma 1.5 px. */
function addRing(grey: Float32Array, W: number, H: number, o: Round, z: number, amount: number): void {
  const cx = o.x + o.sx * (z - o.z);
  const cy = o.y + o.sy * (z - o.z);
  const band = 5;
  const outer = o.r + band;
  const inner = Math.max(0, o.r - band);
  for (let y = Math.max(0, Math.ceil(cy - outer)); y <= Math.min(H - 1, Math.floor(cy + outer)); y++) {
    const dy2 = (y - cy) ** 2;
    const xo = Math.sqrt(outer * outer - dy2);
    const xi = dy2 < inner * inner ? Math.sqrt(inner * inner - dy2) : 0;
    // Two x ranges: left and right of the ring's hole (one range where the row misses the hole).
    const ranges: [number, number][] =
      xi > 0
        ? [
            [cx - xo, cx - xi],
            [cx + xi, cx + xo],
          ]
        : [[cx - xo, cx + xo]];
    for (const [lo, hi] of ranges) {
      for (let x = Math.max(0, Math.ceil(lo)); x <= Math.min(W - 1, Math.floor(hi)); x++) {
        const d = Math.sqrt((x - cx) ** 2 + dy2) - o.r;
        grey[y * W + x] -= amount * Math.exp((-d * d) / (2 * 1.5 * 1.5));
      }
    }
  }
}

/**
 * Renders a mitochondria scene (2D with depth 1, else a volume) and its instance labels.
 * Deterministic for a given rng state and options.
 */
export function renderMitoScene(rng: Rng, options: MitoSceneOptions): MitoScene {
  const { width: W, height: H } = options;
  const D = options.depth ?? 1;
  const foreground = options.foreground ?? 0.08;
  if (!Number.isInteger(W) || !Number.isInteger(H) || W < 16 || H < 16) throw new Error(`mito scene size must be integers >= 16, got ${W} x ${H}`);
  if (!Number.isInteger(D) || D < 1) throw new Error(`mito scene depth must be a positive integer, got ${D}`);
  if (!(foreground > 0 && foreground <= 0.4)) throw new Error(`foreground must be in (0, 0.4], got ${foreground}`);
  const plane = W * H;
  const instances = new Uint16Array(plane * D);
  const mitos = placeMitochondria(rng, W, H, D, foreground * plane * D, instances);

  const areaScale = plane / REFERENCE_AREA;
  const size = Math.min(W, H);
  const ringScale = Math.min(1, size / 512);
  const rings = rounds(
    rng,
    countFor(rng, 6 * areaScale),
    W,
    H,
    D,
    () => rng.uniform(60, 220) * ringScale,
    () => Infinity,
  );
  // Per-slice densities of a 512 x 512 slice; a blob of half-extent rz crosses about 2 rz slices.
  const perVolume = (perSlice: number, meanRz: number) => perSlice * areaScale * (D === 1 ? 1 : D / (2 * meanRz));
  const vesicles = rounds(
    rng,
    countFor(rng, perVolume(25, 1.75)),
    W,
    H,
    D,
    () => rng.uniform(3, 7),
    () => rng.uniform(1, 2.5),
  );
  const granules = rounds(
    rng,
    countFor(rng, perVolume(14, 1.5)),
    W,
    H,
    D,
    () => rng.uniform(3, 6),
    () => rng.uniform(1, 2),
  );

  const coarse = new VolumeNoise(rng, W, H, D, 64, 8);
  const medium = new VolumeNoise(rng, W, H, D, 16, 3);
  const fine = new VolumeNoise(rng, W, H, D, 4, 1);
  const light = new VolumeNoise(rng, W, H, D, Math.max(W, H) / 2, 16);
  const sigma = rng.uniform(0.7, 1.0);
  const noise = rng.uniform(0.05, 0.08);
  const base = rng.uniform(0.46, 0.54);

  const image = new Uint8Array(plane * D);
  const grey = new Float32Array(plane);
  const blurred = new Float32Array(plane);
  const rows = Array.from({ length: 4 }, () => new Float32Array(W));
  for (let z = 0; z < D; z++) {
    for (let y = 0; y < H; y++) {
      const [c, m, f, l] = rows;
      coarse.row(z, y, c);
      medium.row(z, y, m);
      fine.row(z, y, f);
      light.row(z, y, l);
      for (let x = 0; x < W; x++) grey[y * W + x] = base + 0.05 * c[x] + 0.04 * m[x] + 0.03 * f[x] + 0.05 * l[x];
    }
    for (const ring of rings) addRing(grey, W, H, ring, z, 0.18);
    for (const v of vesicles) addRound(grey, W, H, v, z, 3, -0.12, (t2) => Math.exp(-t2 / 2));
    const offset = z * plane;
    for (const mito of mitos) {
      if (z < mito.z0 || z > mito.z1) continue;
      forSection(mito, z, W, H, 0, (i, u, v, a, b) => {
        if (instances[i] !== mito.id) return;
        const rho = Math.sqrt((u * u) / (a * a) + (v * v) / (b * b));
        const fromEdge = (1 - rho) * b;
        let add: number;
        if (fromEdge < 1.6) {
          add = 0.1; // the outer membrane: darker than the body, still above the background
        } else {
          const wave = 0.5 + 0.5 * Math.cos((2 * Math.PI * u) / mito.period + mito.phase + 0.15 * v);
          add = mito.body - 0.16 * wave * wave;
        }
        grey[i - offset] += add;
      });
    }
    for (const g of granules) addRound(grey, W, H, g, z, 2.5, 0.3, (t2) => Math.exp(-((t2 / 2) ** 2)));
    gaussianBlur(grey, W, H, sigma, blurred);
    for (let i = 0; i < plane; i++) {
      // Irwin-Hall approximation of a normal deviate: cheap, and plenty for sensor noise.
      const gauss = (rng.next() + rng.next() + rng.next() + rng.next() - 2) * Math.sqrt(3);
      const v = blurred[i] + noise * gauss;
      image[offset + i] = v <= 0 ? 0 : v >= 1 ? 255 : Math.round(v * 255);
    }
  }
  const granuleMask = new Uint8Array(plane * D);
  for (let z = 0; z < D; z++) for (const g of granules) markRound(granuleMask, instances, W, H, g, z, GRANULE_REACH);
  return { width: W, height: H, depth: D, image, instances, instanceCount: mitos.length, granules: granuleMask };
}

type SplitCounts = { readonly train: number; readonly val: number; readonly test: number };

function checkCounts(count: SplitCounts): void {
  for (const split of SPLITS) {
    const n = count[split];
    if (!Number.isInteger(n) || n < 0) throw new Error(`count.${split} must be a non-negative integer, got ${n}`);
  }
}

/** The class values of a class-map mask (`classes: true`): background, granule, mitochondrion. */
export const MITO_CLASS_VALUES = { background: 0, granule: 128, mitochondrion: 255 } as const;

/**
 * The 8-bit mask (255 = mitochondrion) of instance labels, and the mitochondrion fraction; with
 * `granules`, a class map that also draws granules as 128 (MITO_CLASS_VALUES).
 */
function maskOf(instances: Uint16Array, granules?: Uint8Array): { mask: Uint8Array; fraction: number } {
  const mask = new Uint8Array(instances.length);
  let n = 0;
  for (let i = 0; i < mask.length; i++) {
    if (instances[i] !== 0) {
      mask[i] = 255;
      n++;
    } else if (granules?.[i]) mask[i] = MITO_CLASS_VALUES.granule;
  }
  return { mask, fraction: n / mask.length };
}

export interface SyntheticMitoOptions {
  /** Directory to create (must not exist, or be empty). */
  readonly dir: string;
  readonly seed: number;
  /** Image edge, or [width, height]. */
  readonly size: number | readonly [number, number];
  /** Images per split. */
  readonly count: SplitCounts;
  /** Target fraction of mitochondrion pixels. Default 0.08. */
  readonly foreground?: number;
  /** Masks as 3-class maps (MITO_CLASS_VALUES: background 0, granule 128, mitochondrion 255) instead of binary. Default false. */
  readonly classes?: boolean;
}

export interface SyntheticMitoSplit {
  /** `DIR/<split>`: the folder with images/, masks/ and instances/. */
  readonly dir: string;
  readonly images: string;
  readonly masks: string;
  readonly instances: string;
  /** File stems, e.g. `train-000` (`images/train-000.png`, `masks/train-000.png`, ...). */
  readonly names: readonly string[];
}

export interface SyntheticMitoDataset {
  readonly root: string;
  readonly splits: Record<UriscSplit, SyntheticMitoSplit>;
  /** Fraction of mitochondrion pixels per image name. */
  readonly foregroundFraction: Record<string, number>;
  /** Number of instances per image name. */
  readonly instanceCount: Record<string, number>;
}

function splitLayout(root: string, split: UriscSplit, names: readonly string[]): SyntheticMitoSplit {
  const dir = join(root, split);
  return { dir, images: join(dir, 'images'), masks: join(dir, 'masks'), instances: join(dir, 'instances'), names };
}

/**
 * Writes a 2D synthetic mitochondria task: `DIR/{train,val,test}/{images,masks,instances}/NAME.png`.
 * Deterministic: the same options give byte-identical files. The directory appears atomically.
 *
 * @example
 * const ds = await generateSyntheticMito({ dir: 'out/mito', seed: 1, size: 512, count: { train: 8, val: 2, test: 2 } });
 * // ds.splits.train.images, ds.splits.train.masks: the generic layout's folders
 */
export async function generateSyntheticMito(options: SyntheticMitoOptions): Promise<SyntheticMitoDataset> {
  const root = resolve(options.dir);
  const [width, height] = imageSize(options.size);
  checkCounts(options.count);
  await assertFreshDirectory(root);
  const names: Record<UriscSplit, string[]> = { train: [], val: [], test: [] };
  const foregroundFraction: Record<string, number> = {};
  const instanceCount: Record<string, number> = {};
  const published = await publishDirectory(root, async (tmp) => {
    const pending: Promise<void>[] = [];
    for (const [s, split] of SPLITS.entries()) {
      const layout = splitLayout(tmp, split, []);
      for (let k = 0; k < options.count[split]; k++) {
        const name = `${split}-${String(k).padStart(3, '0')}`;
        const scene = renderMitoScene(new Rng(deriveSeed(options.seed, SALT_2D, s, k)), { width, height, foreground: options.foreground });
        const { mask, fraction } = maskOf(scene.instances, options.classes ? scene.granules : undefined);
        names[split].push(name);
        foregroundFraction[name] = fraction;
        instanceCount[name] = scene.instanceCount;
        // Encoding runs on sharp's threads while the next image renders.
        pending.push(writeImage(join(layout.images, `${name}.png`), { width, height, bitDepth: 8, data: scene.image }));
        pending.push(writeImage(join(layout.masks, `${name}.png`), { width, height, bitDepth: 8, data: mask }));
        pending.push(writeImage(join(layout.instances, `${name}.png`), { width, height, bitDepth: 16, data: scene.instances }));
        if (pending.length >= 12) await Promise.all(pending.splice(0));
      }
    }
    await Promise.all(pending);
    await writeJsonAtomic(join(tmp, 'synthetic.json'), {
      generator: 'emseg synthetic mitochondria (2D)',
      version: SYNTHETIC_MITO_VERSION,
      options: { ...options, dir: undefined },
      foregroundFraction,
      instanceCount,
    });
  });
  if (!published) throw new DataError(root, 'was created by another process while generating', 'a directory only this call writes');
  const splits = { train: splitLayout(root, 'train', names.train), val: splitLayout(root, 'val', names.val), test: splitLayout(root, 'test', names.test) };
  return { root, splits, foregroundFraction, instanceCount };
}

/** The z-slices of a volume stored slice after slice (views, not copies). */
function slicesOf(volume: PixelArray, width: number, height: number): GreyImage[] {
  const plane = width * height;
  return Array.from({ length: volume.length / plane }, (_, z) => greyImage(width, height, volume.subarray(z * plane, (z + 1) * plane)));
}

export interface SyntheticMitoStackOptions {
  /** Directory to create (must not exist, or be empty). */
  readonly dir: string;
  readonly seed: number;
  /** Slice edge, or [width, height]. */
  readonly size: number | readonly [number, number];
  /** Slices per stack (pages). */
  readonly depth: number;
  /**
   * Stacks per split, as `DIR/{train,val,test}/{images,masks,instances}/NAME.tif`. Default: one
   * stack, `DIR/{images,masks,instances}/stack.tif`.
   */
  readonly count?: SplitCounts;
  /** Target fraction of mitochondrion voxels. Default 0.08. */
  readonly foreground?: number;
}

export interface SyntheticMitoStack {
  /** The split, or null for the single stack of the flat layout. */
  readonly split: UriscSplit | null;
  /** File stem: `stack`, or `train-000`, ... */
  readonly name: string;
  /** 8-bit grey image stack, 8-bit mask stack (255 / 0), 16-bit instance-id stack. */
  readonly image: string;
  readonly mask: string;
  readonly instances: string;
  readonly width: number;
  readonly height: number;
  readonly depth: number;
  /** Fraction of mitochondrion voxels in the stack, and per slice. */
  readonly foregroundFraction: number;
  readonly sliceForegroundFraction: readonly number[];
  readonly instanceCount: number;
}

export interface SyntheticMitoStackDataset {
  readonly root: string;
  readonly layout: 'flat' | 'split-folders';
  readonly stacks: readonly SyntheticMitoStack[];
}

/**
 * Writes a 3D synthetic mitochondria task as multi-page TIFF stacks (image, mask and instance ids,
 * one slice per page); instances are ellipsoids a few slices deep whose id continues across z.
 * Deterministic: the same options give byte-identical files. The directory appears atomically.
 *
 * @example
 * const ds = await generateSyntheticMitoStack({ dir: 'out/mito3d', seed: 1, size: 256, depth: 32 });
 * const volume = await readStack(ds.stacks[0].image);
 */
export async function generateSyntheticMitoStack(options: SyntheticMitoStackOptions): Promise<SyntheticMitoStackDataset> {
  const root = resolve(options.dir);
  const [width, height] = imageSize(options.size);
  const { depth } = options;
  if (!Number.isInteger(depth) || depth < 1) throw new Error(`depth must be a positive integer, got ${depth}`);
  if (options.count !== undefined) checkCounts(options.count);
  await assertFreshDirectory(root);
  const plan: { split: UriscSplit | null; name: string; seed: number }[] = [];
  if (options.count === undefined) plan.push({ split: null, name: 'stack', seed: deriveSeed(options.seed, SALT_3D) });
  else {
    for (const [s, split] of SPLITS.entries()) {
      for (let k = 0; k < options.count[split]; k++)
        plan.push({ split, name: `${split}-${String(k).padStart(3, '0')}`, seed: deriveSeed(options.seed, SALT_3D, s, k) });
    }
  }
  const at = (base: string, split: UriscSplit | null, kind: string, name: string) => join(base, ...(split === null ? [] : [split]), kind, `${name}.tif`);
  const stacks: SyntheticMitoStack[] = [];
  const published = await publishDirectory(root, async (tmp) => {
    for (const { split, name, seed } of plan) {
      const scene = renderMitoScene(new Rng(seed), { width, height, depth, foreground: options.foreground });
      const { mask, fraction } = maskOf(scene.instances);
      const plane = width * height;
      const sliceForegroundFraction = Array.from({ length: depth }, (_, z) => {
        let n = 0;
        for (let i = z * plane; i < (z + 1) * plane; i++) if (mask[i] !== 0) n++;
        return n / plane;
      });
      await Promise.all([
        writeStack(at(tmp, split, 'images', name), slicesOf(scene.image, width, height)),
        writeStack(at(tmp, split, 'masks', name), slicesOf(mask, width, height)),
        writeStack(at(tmp, split, 'instances', name), slicesOf(scene.instances, width, height)),
      ]);
      stacks.push({
        split,
        name,
        image: at(root, split, 'images', name),
        mask: at(root, split, 'masks', name),
        instances: at(root, split, 'instances', name),
        width,
        height,
        depth,
        foregroundFraction: fraction,
        sliceForegroundFraction,
        instanceCount: scene.instanceCount,
      });
    }
    await writeJsonAtomic(join(tmp, 'synthetic.json'), {
      generator: 'emseg synthetic mitochondria (3D stacks)',
      version: SYNTHETIC_MITO_VERSION,
      options: { ...options, dir: undefined },
      stacks: stacks.map(({ split, name, foregroundFraction, instanceCount }) => ({ split, name, foregroundFraction, instanceCount })),
    });
  });
  if (!published) throw new DataError(root, 'was created by another process while generating', 'a directory only this call writes');
  return { root, layout: options.count === undefined ? 'flat' : 'split-folders', stacks };
}
