/**
 * Figures of the attribution command: the per-pixel heat-map panel (image crop, label, prediction
 * and the attribution field side by side, the pixel marked) and the S_k box plots in the style of
 * the U-RISC paper's Figure 7B, drawn with Vega-Lite (spec -> Vega -> SVG) and rasterised by sharp.
 */
import sharp from 'sharp';
import { writeFileAtomic } from '@emseg/fs';

/** One RGB panel, row-major, 3 bytes a pixel. */
interface Panel {
  width: number;
  height: number;
  rgb: Uint8Array;
}

function greyPanel(values: Float32Array, width: number, height: number, map: (v: number) => number): Panel {
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < values.length; i++) rgb.fill(Math.round(Math.min(255, Math.max(0, map(values[i])))), 3 * i, 3 * i + 3);
  return { width, height, rgb };
}

/**
 * Colour of a normalised attribution a in [-1, 1]: blue pushes the output towards membrane, red away,
 * white none. The ramp is logarithmic in |a| (0.001 white, 0.01 a third, 0.1 two thirds, 1 full), so
 * the area S_k counts at k = 0.01 shows, not only the peak.
 */
export function attributionColour(a: number): [number, number, number] {
  const m = Math.abs(a);
  const v = m <= 0 ? 0 : Math.min(1, Math.max(0, 1 + Math.log10(m) / 3));
  const fade = Math.round(255 * (1 - v));
  return a >= 0 ? [fade, fade, 255] : [255, fade, fade];
}

function fieldPanel(field: Float32Array, width: number, height: number): Panel {
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < field.length; i++) rgb.set(attributionColour(field[i]), 3 * i);
  return { width, height, rgb };
}

/** A green cross-hair (with a gap, so the pixel itself shows) at (x, y). */
function markPixel(panel: Panel, x: number, y: number): void {
  const arm = Math.max(4, Math.round(Math.min(panel.width, panel.height) / 24));
  const gap = 2;
  const put = (px: number, py: number) => {
    if (px < 0 || py < 0 || px >= panel.width || py >= panel.height) return;
    panel.rgb.set([0, 200, 0], 3 * (py * panel.width + px));
  };
  for (let d = gap; d <= arm; d++) {
    for (const t of [-1, 0, 1]) {
      put(x + d, y + t);
      put(x - d, y + t);
      put(x + t, y + d);
      put(x + t, y - d);
    }
  }
}

const escapeXml = (s: string) => s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);

export interface HeatmapFigure {
  /** The window's grey values in [0, 1]. */
  image: Float32Array;
  /** Membrane probability in the window. */
  probability: Float32Array;
  /** The label crop as a membrane mask (1 = membrane), if a label was given. */
  label?: Uint8Array;
  /** The normalised attribution field, [-1, 1]. */
  field: Float32Array;
  width: number;
  height: number;
  /** The attributed pixel, in window coordinates. */
  x: number;
  y: number;
  /** One line under the panels. */
  caption: string;
}

/**
 * Writes the heat-map figure as PNG: image | label | prediction | attribution (membrane dark in the
 * label and prediction, as U-RISC draws them), the pixel marked in each, a caption below.
 */
export async function writeHeatmapPng(path: string, figure: HeatmapFigure): Promise<void> {
  const { width, height, x, y } = figure;
  const panels: Array<[string, Panel]> = [['image', greyPanel(figure.image, width, height, (v) => 255 * v)]];
  if (figure.label) panels.push(['label', greyPanel(Float32Array.from(figure.label), width, height, (v) => 255 * (1 - v))]);
  panels.push(['prediction', greyPanel(figure.probability, width, height, (v) => 255 * (1 - v))]);
  panels.push(['attribution |A|: 0.001 - 1 (log)', fieldPanel(figure.field, width, height)]);
  for (const [, p] of panels) markPixel(p, x, y);
  const gap = 8;
  const title = 18;
  const captionHeight = 40;
  const total = { width: panels.length * width + (panels.length - 1) * gap, height: title + height + captionHeight };
  const font = Math.max(10, Math.min(14, Math.round(width / 22)));
  const svg = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${total.width}" height="${total.height}">`,
    ...panels.map(([name], i) => `<text x="${i * (width + gap) + 2}" y="${title - 5}" font-family="sans-serif" font-size="${font}">${escapeXml(name)}</text>`),
    `<text x="2" y="${title + height + 16}" font-family="sans-serif" font-size="${font}">${escapeXml(figure.caption)}</text>`,
    `<text x="2" y="${title + height + 34}" font-family="sans-serif" font-size="${font}">${escapeXml('attribution: blue pushes the pixel towards membrane, red away; the pixel is marked green')}</text>`,
    '</svg>',
  ].join('');
  const composites: sharp.OverlayOptions[] = panels.map(([, p], i) => ({
    input: Buffer.from(p.rgb.buffer, p.rgb.byteOffset, p.rgb.byteLength),
    raw: { width: p.width, height: p.height, channels: 3 },
    left: i * (width + gap),
    top: title,
  }));
  composites.push({ input: Buffer.from(svg), left: 0, top: 0 });
  const png = await sharp({ create: { width: total.width, height: total.height, channels: 3, background: { r: 255, g: 255, b: 255 } } })
    .composite(composites)
    .png()
    .toBuffer();
  await writeFileAtomic(path, png);
}

/** One S_k value of one attributed pixel. */
export interface AreaPoint {
  /** Class of the pixel ('true positive', ...). */
  cls: string;
  k: number;
  nm2: number;
  /** Dataset / model the pixel is from (compare plots). */
  series?: string;
}

/** A Vega-Lite spec rendered to SVG (no browser, no canvas: Vega's SVG string renderer). */
export async function vegaLiteSvg(spec: Record<string, unknown>): Promise<string> {
  const [vega, vegaLite] = await Promise.all([import('vega'), import('vega-lite')]);
  const compiled = vegaLite.compile(spec as never).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/**
 * The Vega-Lite spec of S_k box plots (Figure 7B style): one panel per k, a box per class (or per
 * series, one column per class, when points carry a series), each pixel a dot over the boxes.
 */
export function areaBoxPlotSpec(points: readonly AreaPoint[], title: string): Record<string, unknown> {
  const compare = points.some((p) => p.series !== undefined);
  const x = compare
    ? { field: 'series', type: 'nominal', title: null }
    : { field: 'cls', type: 'nominal', title: null, sort: ['true positive', 'false positive', 'false negative', 'chosen'] };
  const y = { field: 'nm2', type: 'quantitative', title: 'S_k (nm²)', scale: { zero: true } };
  const layer = [
    { mark: { type: 'boxplot', extent: 'min-max', size: 28 }, encoding: { x, y, color: { ...x, legend: null } } },
    { mark: { type: 'point', filled: true, size: 18, opacity: 0.55, color: 'black' }, encoding: { x, y } },
  ];
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    data: { values: points.map((p) => ({ ...p, k: `k = ${p.k}` })) },
    facet: compare
      ? { row: { field: 'k', type: 'nominal', title: null }, column: { field: 'cls', type: 'nominal', title: null } }
      : { column: { field: 'k', type: 'nominal', title: null } },
    spec: { width: compare ? 140 : 180, height: 220, layer },
    resolve: { scale: { y: 'independent' } },
    config: { background: 'white', font: 'sans-serif' },
  };
}

/** Writes the box plot as `<path>.svg` and `<path>.png`; returns both paths. */
export function writeAreaBoxPlot(path: string, points: readonly AreaPoint[], title: string): Promise<{ svg: string; png: string }> {
  return writeVegaLite(path, areaBoxPlotSpec(points, title));
}

/** One bar of a grouped bar chart (the benchmark's results). */
export interface Bar {
  group: string;
  series: string;
  value: number;
}

/** Grouped bars: one group per `group` (an encoder), one bar per `series` (frozen / fine-tuned), the metric on y. */
export function barChartSpec(bars: readonly Bar[], title: string, metric: string): Record<string, unknown> {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    data: { values: bars },
    mark: { type: 'bar' },
    encoding: {
      x: { field: 'group', type: 'nominal', title: null, axis: { labelAngle: 0 } },
      xOffset: { field: 'series', type: 'nominal' },
      y: { field: 'value', type: 'quantitative', title: metric, scale: { domain: [0, 1] } },
      color: { field: 'series', type: 'nominal', title: null },
    },
    width: Math.max(240, 90 * new Set(bars.map((b) => b.group)).size),
    height: 260,
    config: { background: 'white', font: 'sans-serif' },
  };
}

/** Renders a Vega-Lite spec to `<path>.svg` and `<path>.png` (atomically); returns both paths. */
export async function writeVegaLite(path: string, spec: Record<string, unknown>): Promise<{ svg: string; png: string }> {
  const svg = await vegaLiteSvg(spec);
  const svgPath = `${path}.svg`;
  const pngPath = `${path}.png`;
  await writeFileAtomic(svgPath, svg);
  await writeFileAtomic(pngPath, await sharp(Buffer.from(svg), { density: 144 }).png().toBuffer());
  return { svg: svgPath, png: pngPath };
}
