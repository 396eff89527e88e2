/**
 * One synthetic EM image with its exact membrane label.
 *
 * Geometry: cells are the Voronoi regions of jittered-grid seeds, seen through a smooth random
 * warp so the walls bend. A pixel is membrane when its (warped) distance to the bisector of its two
 * nearest seeds is below half of that wall's thickness (2-6 px, one value per wall). The label
 * is exactly that set; the image draws the same walls dark with a soft edge.
 * Appearance: cytoplasm of varying grey, unlabelled distractors (mitochondria with cristae and a
 * dark outline, clusters of vesicles with dark rims), faint walls, uneven illumination and
 * contrast, blur, noise, and optionally an overall low-contrast image.
 */
import { gaussianBlur } from '../filters.js';
import { fmix32, type Rng } from '../random.js';
import { ValueNoise } from './value-noise.js';

export interface EmSceneOptions {
  readonly width: number;
  readonly height: number;
  /** Mean distance between cell centres in pixels. Default 100 (about 7% membrane pixels). */
  readonly cellSize?: number;
  /** Wall thickness range in pixels. Default [2, 6]. */
  readonly thickness?: readonly [number, number];
  /** Fraction of walls drawn with low contrast (still labelled). Default 0.15. */
  readonly faintFraction?: number;
  /** Render the whole image with compressed contrast. Default false. */
  readonly lowContrast?: boolean;
}

export interface EmScene {
  readonly width: number;
  readonly height: number;
  /** 8-bit grey image. */
  readonly image: Uint8Array;
  /** 1 = membrane, 0 = anything else (organelles and vesicles included). */
  readonly membrane: Uint8Array;
}

const JITTER = 0.7;
const GRID_MARGIN = 2;
const MEMBRANE_GREY = 0.16;
/** About 0.3% of pixels are dark granules (unlabelled). */
const GRANULE_THRESHOLD = 0.003 * 2 ** 32;

interface Mitochondrion {
  x: number;
  y: number;
  cos: number;
  sin: number;
  a: number;
  b: number;
  period: number;
}

interface Vesicle {
  x: number;
  y: number;
  r: number;
}

/** Vesicles of one cell and a bounding circle (squared radius) for a quick rejection test. */
interface VesicleCluster {
  x: number;
  y: number;
  reach2: number;
  vesicles: Vesicle[];
}

function smoothstep(e0: number, e1: number, x: number): number {
  const t = x <= e0 ? 0 : x >= e1 ? 1 : (x - e0) / (e1 - e0);
  return t * t * (3 - 2 * t);
}

/** Renders one image and its membrane mask. Deterministic for a given rng state and options. */
export function renderEmScene(rng: Rng, options: EmSceneOptions): EmScene {
  const { width: W, height: H } = options;
  const s = options.cellSize ?? 100;
  const [t0, t1] = options.thickness ?? [2, 6];
  const faint = options.faintFraction ?? 0.15;
  const salt = rng.nextU32();

  // Seeds on a jittered grid (with a margin of cells around the image for warped positions).
  const cols = Math.ceil(W / s) + 2 * GRID_MARGIN;
  const rows = Math.ceil(H / s) + 2 * GRID_MARGIN;
  const seedX = new Float64Array(cols * rows);
  const seedY = new Float64Array(cols * rows);
  const cellGrey = new Float32Array(cols * rows);
  const mitos: (Mitochondrion | null)[] = [];
  const clusters: (VesicleCluster | null)[] = [];
  for (let gy = 0; gy < rows; gy++) {
    for (let gx = 0; gx < cols; gx++) {
      const i = gy * cols + gx;
      seedX[i] = (gx - GRID_MARGIN + 0.5 + JITTER * (rng.next() - 0.5)) * s;
      seedY[i] = (gy - GRID_MARGIN + 0.5 + JITTER * (rng.next() - 0.5)) * s;
      cellGrey[i] = rng.uniform(0.58, 0.76);
      let mito: Mitochondrion | null = null;
      if (rng.chance(0.4)) {
        const angle = rng.uniform(0, Math.PI);
        const a = rng.uniform(0.12, 0.24) * s;
        mito = {
          x: seedX[i] + rng.uniform(-0.1, 0.1) * s,
          y: seedY[i] + rng.uniform(-0.1, 0.1) * s,
          cos: Math.cos(angle),
          sin: Math.sin(angle),
          a,
          b: a * rng.uniform(0.35, 0.6),
          period: rng.uniform(5, 9),
        };
      }
      mitos.push(mito);
      let cluster: VesicleCluster | null = null;
      if (rng.chance(0.35)) {
        const angle = rng.uniform(0, 2 * Math.PI);
        const cx = seedX[i] + Math.cos(angle) * 0.25 * s;
        const cy = seedY[i] + Math.sin(angle) * 0.25 * s;
        const n = 4 + rng.int(9);
        const vesicles: Vesicle[] = [];
        let reach = 0;
        for (let k = 0; k < n; k++) {
          const v = { x: cx + rng.normal(0, 0.07 * s), y: cy + rng.normal(0, 0.07 * s), r: rng.uniform(2.5, 6) };
          vesicles.push(v);
          reach = Math.max(reach, Math.hypot(v.x - cx, v.y - cy) + v.r + 1);
        }
        cluster = { x: cx, y: cy, reach2: reach * reach, vesicles };
      }
      clusters.push(cluster);
    }
  }

  const warpX = new ValueNoise(rng, W, H, 0.9 * s);
  const warpY = new ValueNoise(rng, W, H, 0.9 * s);
  const fineWarpX = new ValueNoise(rng, W, H, 0.3 * s);
  const fineWarpY = new ValueNoise(rng, W, H, 0.3 * s);
  const texture = new ValueNoise(rng, W, H, 4);
  const mottle = new ValueNoise(rng, W, H, 0.25 * s);
  const illumination = new ValueNoise(rng, W, H, Math.max(W, H) / 2.5);
  const contrastField = new ValueNoise(rng, W, H, Math.max(W, H) / 3);
  const warpAmp = 0.16 * s;
  const fineWarpAmp = 0.05 * s;

  const grey = new Float32Array(W * H);
  const membrane = new Uint8Array(W * H);
  let sum = 0;
  const rowBuffers = Array.from({ length: 6 }, () => new Float32Array(W));
  const [wx, wy, fwx, fwy, tex, mot] = rowBuffers;
  for (let y = 0; y < H; y++) {
    warpX.row(y, wx);
    warpY.row(y, wy);
    fineWarpX.row(y, fwx);
    fineWarpY.row(y, fwy);
    texture.row(y, tex);
    mottle.row(y, mot);
    for (let x = 0; x < W; x++) {
      const px = x + 0.5 + warpAmp * wx[x] + fineWarpAmp * fwx[x];
      const py = y + 0.5 + warpAmp * wy[x] + fineWarpAmp * fwy[x];
      const cx = Math.floor(px / s) + GRID_MARGIN;
      const cy = Math.floor(py / s) + GRID_MARGIN;
      let d1 = Infinity;
      let d2 = Infinity;
      let i1 = 0;
      let i2 = 0;
      for (let gy = cy - 1; gy <= cy + 1; gy++) {
        for (let gx = cx - 1; gx <= cx + 1; gx++) {
          const i = gy * cols + gx;
          const dx = px - seedX[i];
          const dy = py - seedY[i];
          const d = dx * dx + dy * dy;
          if (d < d1) {
            d2 = d1;
            i2 = i1;
            d1 = d;
            i1 = i;
          } else if (d < d2) {
            d2 = d;
            i2 = i;
          }
        }
      }
      let v = cellGrey[i1] + 0.05 * tex[x] + 0.04 * mot[x];
      if (fmix32(Math.imul(y, 0x85ebca6b) ^ x ^ salt) < GRANULE_THRESHOLD) v *= 0.55;

      const mito = mitos[i1];
      if (mito !== null) {
        const dx = px - mito.x;
        const dy = py - mito.y;
        const u = dx * mito.cos + dy * mito.sin;
        const w = -dx * mito.sin + dy * mito.cos;
        const r2 = (u / mito.a) ** 2 + (w / mito.b) ** 2;
        if (r2 < 1) {
          const fromEdge = (1 - Math.sqrt(r2)) * mito.b;
          v = fromEdge < 1.8 ? 0.28 : 0.42 + 0.07 * Math.sin((2 * Math.PI * u) / mito.period);
        }
      }
      const cluster = clusters[i1];
      if (cluster !== null && (px - cluster.x) ** 2 + (py - cluster.y) ** 2 < cluster.reach2) {
        for (const ves of cluster.vesicles) {
          const d = Math.sqrt((px - ves.x) ** 2 + (py - ves.y) ** 2);
          if (d < ves.r + 1) v = Math.abs(d - ves.r) < 0.9 ? 0.3 : Math.max(v, 0.72);
        }
      }

      const sx = seedX[i2] - seedX[i1];
      const sy = seedY[i2] - seedY[i1];
      const dist = (d2 - d1) / (2 * Math.sqrt(sx * sx + sy * sy));
      const lo = i1 < i2 ? i1 : i2;
      const hi = i1 < i2 ? i2 : i1;
      const h = fmix32(Math.imul(lo, 0x9e3779b1) ^ hi ^ salt);
      const half = 0.5 * (t0 + ((h & 0xffff) / 65536) * (t1 - t0));
      if (dist < half) membrane[y * W + x] = 1;
      if (dist < half + 1) {
        const contrast = ((h >>> 16) & 0xff) / 256 < faint ? 0.3 + 0.15 * ((h >>> 24) / 256) : 0.8 + 0.2 * ((h >>> 24) / 256);
        const m = contrast * (1 - smoothstep(half - 0.7, half + 0.7, dist));
        v += (MEMBRANE_GREY - v) * m;
      }
      grey[y * W + x] = v;
      sum += v;
    }
  }

  // Uneven contrast and illumination, optional low contrast, then blur and noise.
  const mean = sum / (W * H);
  const gain = options.lowContrast ? 0.4 : 1;
  for (let y = 0; y < H; y++) {
    contrastField.row(y, wx);
    illumination.row(y, wy);
    for (let x = 0; x < W; x++) {
      const i = y * W + x;
      const local = gain * (1 + 0.2 * wx[x]);
      grey[i] = (mean + (grey[i] - mean) * local) * (1 + 0.12 * wy[x]);
    }
  }
  const blurred = gaussianBlur(grey, W, H, rng.uniform(0.6, 1.1));
  const noise = rng.uniform(0.025, 0.05);
  const image = new Uint8Array(W * H);
  for (let i = 0; i < image.length; i++) {
    // Irwin-Hall approximation of a normal deviate: cheap, and plenty for sensor noise.
    const gauss = (rng.next() + rng.next() + rng.next() + rng.next() - 2) * Math.sqrt(3);
    const v = blurred[i] + noise * gauss;
    image[i] = v <= 0 ? 0 : v >= 1 ? 255 : Math.round(v * 255);
  }
  return { width: W, height: H, image, membrane };
}
