/**
 * Chunked volumes as Zarr arrays in local directory stores (zarrita): Zarr v2 and v3, plain arrays
 * or OME-Zarr images (a group whose `multiscales` metadata names one array per scale level).
 *
 * - `openZarrVolume(path, { dataset, scale })`: an array with 2 (y, x) or 3 (z, y, x) spatial
 *   dimensions (leading axes of size 1, e.g. OME-Zarr's c or t, are dropped), of dtype uint8,
 *   uint16 or float32 (or, with `labels`, also uint32 instance labels). `dataset` is a path inside
 *   the store; an OME-Zarr image picks `scale` (default 0, the full resolution).
 * - `ZarrVolume.read(start, shape)`: one region, C order, as the array's typed array.
 * - `createZarrVolume(path, { shape, chunks, dtype })`: a new uint8, uint16 or uint32 array (v3 by default,
 *   gzip level 1), optionally inside an OME-Zarr image group with single-scale `multiscales`
 *   (dataset "0"); metadata is written atomically, and an existing identical array is reused, so
 *   several processes may create the same output at once.
 * - `ZarrVolume.write(start, shape, data)`: a chunk-aligned region; every chunk file is written
 *   atomically (temp file + rename), so a killed writer never leaves half a chunk.
 *
 * Errors are `DataError`s naming the path: not a Zarr array or group, an unsupported dtype, a
 * dimension mismatch, a region outside the array or not aligned to its chunks.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { deflate, gunzip, gzip, inflate } from 'node:zlib';
import * as zarr from 'zarrita';
import FileSystemStore from '@zarrita/storage/fs';
import type { AbsolutePath, AsyncMutable, RangeQuery } from '@zarrita/storage';
import { writeFileAtomic } from '@emseg/fs';
import { DataError, describeFsError } from './errors.js';

export type ZarrDtype = 'uint8' | 'uint16' | 'uint32' | 'float32';
export type ZarrData = Uint8Array | Uint16Array | Uint32Array | Float32Array;
export type ZarrFormat = 2 | 3;

const READABLE: readonly ZarrDtype[] = ['uint8', 'uint16', 'float32'];
/** What `openZarrVolume(path, { labels: true })` also opens: label arrays. */
const LABELS: readonly ZarrDtype[] = [...READABLE, 'uint32'];

/**
 * gzip and zlib through node:zlib: zarrita's own codecs only decode (DecompressionStream), so they
 * are replaced in its registry by ones that also encode; `level` as in the codec's metadata.
 */
function nodeCodec(compress: typeof gzip, decompress: typeof gunzip) {
  const encode = promisify(compress);
  const decode = promisify(decompress);
  return {
    kind: 'bytes_to_bytes' as const,
    fromConfig: (config: unknown) => {
      const level = (config as { level?: number } | undefined)?.level;
      return {
        kind: 'bytes_to_bytes' as const,
        encode: async (bytes: Uint8Array) => new Uint8Array(await encode(bytes, level === undefined ? {} : { level })),
        decode: async (bytes: Uint8Array) => new Uint8Array(await decode(bytes)),
      };
    },
  };
}
for (const name of ['gzip', 'numcodecs.gzip']) zarr.registry.set(name, async () => nodeCodec(gzip, gunzip));
for (const name of ['zlib', 'numcodecs.zlib']) zarr.registry.set(name, async () => nodeCodec(deflate, inflate));

/** A directory store whose writes go through {@link writeFileAtomic}. */
class AtomicDirectoryStore implements AsyncMutable {
  private readonly files: FileSystemStore;

  constructor(readonly root: string) {
    this.files = new FileSystemStore(root);
  }

  get(key: AbsolutePath): Promise<Uint8Array | undefined> {
    return this.files.get(key);
  }

  getRange(key: AbsolutePath, range: RangeQuery): Promise<Uint8Array | undefined> {
    return this.files.getRange(key, range);
  }

  set(key: AbsolutePath, value: Uint8Array): Promise<void> {
    return writeFileAtomic(join(this.root, key.slice(1)), value);
  }
}

type StoreArray = zarr.Array<zarr.DataType, AtomicDirectoryStore>;

/** An opened array: its spatial shape (z, y, x or y, x) and chunks, dtype and format. */
export class ZarrVolume {
  /** Leading size-1 axes (OME-Zarr c, t) that reads and writes index at 0. */
  private readonly lead: number;

  constructor(
    /** The array's directory (store root joined with the dataset path). */
    readonly path: string,
    private readonly array: StoreArray,
    readonly format: ZarrFormat,
  ) {
    this.lead = array.shape.length - Math.min(3, array.shape.length);
  }

  /** Spatial shape: [z, y, x] or [y, x]. */
  get shape(): number[] {
    return this.array.shape.slice(this.lead);
  }

  get chunks(): number[] {
    return this.array.chunks.slice(this.lead);
  }

  get dtype(): ZarrDtype {
    return this.array.dtype as ZarrDtype;
  }

  get attributes(): Record<string, unknown> {
    return this.array.attrs;
  }

  /** The region [start, start + shape) in C order. */
  async read(start: readonly number[], shape: readonly number[]): Promise<ZarrData> {
    this.checkRegion(start, shape);
    const chunk = await zarr.get(this.array, this.selection(start, shape));
    return chunk.data as ZarrData;
  }

  /**
   * Writes `data` (C order) to the region [start, start + shape), which must begin on a chunk
   * boundary and end on one or at the array's edge. Values must fit the dtype.
   */
  async write(start: readonly number[], shape: readonly number[], data: ZarrData): Promise<void> {
    this.checkRegion(start, shape);
    const chunks = this.chunks;
    const full = this.shape;
    const misaligned = start.findIndex((s, i) => s % chunks[i] !== 0 || (s + shape[i] !== full[i] && (s + shape[i]) % chunks[i] !== 0));
    if (misaligned >= 0)
      throw new DataError(this.path, `region start ${fmt(start)} shape ${fmt(shape)} is not aligned to the chunks ${fmt(chunks)}`, 'chunk-aligned writes');
    const size = shape.reduce((a, b) => a * b, 1);
    if (data.length !== size) throw new DataError(this.path, `write of ${data.length} values to a region of ${fmt(shape)} (${size} values)`);
    const want = { uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, float32: Float32Array }[this.dtype];
    if (!(data instanceof want)) throw new DataError(this.path, `write of a ${data.constructor.name} to a ${this.dtype} array`);
    const stride = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
    await zarr.set(this.array, this.selection(start, shape), { data, shape: [...shape], stride } as zarr.Chunk<zarr.DataType>);
  }

  private selection(start: readonly number[], shape: readonly number[]): (number | zarr.Slice)[] {
    return [...Array.from({ length: this.lead }, () => 0), ...start.map((s, i) => zarr.slice(s, s + shape[i]))];
  }

  private checkRegion(start: readonly number[], shape: readonly number[]): void {
    const full = this.shape;
    if (start.length !== full.length || shape.length !== full.length)
      throw new DataError(this.path, `region of ${start.length} / ${shape.length} dimensions for an array of ${full.length} (${fmt(full)})`);
    if (start.some((s, i) => !Number.isInteger(s) || s < 0 || !(shape[i] >= 1) || s + shape[i] > full[i]))
      throw new DataError(this.path, `region start ${fmt(start)} shape ${fmt(shape)} is outside the array's shape ${fmt(full)}`);
  }
}

const fmt = (v: readonly number[]) => `[${v.join(', ')}]`;

export interface OpenZarrOptions {
  /** Path of the array (or OME-Zarr image group) inside the store; default the store root. */
  dataset?: string;
  /** OME-Zarr scale level (index into multiscales[0].datasets); default 0. Only for an OME-Zarr image. */
  scale?: number;
  /** Also open uint32 arrays (instance labels); by default only grey values (uint8, uint16, float32). */
  labels?: boolean;
}

/** The `multiscales` of OME-Zarr 0.4 (attributes) or 0.5 (attributes.ome), or null. */
function multiscales(attrs: Record<string, unknown>): { datasets: { path: string }[] }[] | null {
  const ome = attrs.ome as { multiscales?: unknown } | undefined;
  const list = ome?.multiscales ?? attrs.multiscales;
  return Array.isArray(list) && list.length > 0 ? (list as { datasets: { path: string }[] }[]) : null;
}

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

/** Names of Zarr nodes directly inside `dir` (for error messages). */
async function childNodes(dir: string): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const nodes: string[] = [];
  for (const name of names.sort()) if (await isZarrNode(join(dir, name))) nodes.push(name);
  return nodes;
}

/** Whether `path` is a directory holding Zarr metadata (an array or group, v2 or v3). */
export async function isZarrNode(path: string): Promise<boolean> {
  for (const meta of ['zarr.json', '.zarray', '.zgroup']) if (await exists(join(path, meta))) return true;
  return false;
}

const EXPECTED_NODE = 'a Zarr array or group: a directory holding zarr.json (v3) or .zarray / .zgroup (v2)';

/** Opens the node at `location`, or throws a DataError naming `path`. */
async function openNode(location: zarr.Location<AtomicDirectoryStore>, path: string): Promise<StoreArray | zarr.Group<AtomicDirectoryStore>> {
  try {
    return await zarr.open(location);
  } catch (err) {
    if (err instanceof zarr.NotFoundError) throw new DataError(path, 'is not a Zarr array or group', EXPECTED_NODE);
    throw new DataError(path, `has unreadable Zarr metadata (${(err as Error).message})`);
  }
}

/**
 * Opens a 2D or 3D array of uint8, uint16 or float32 for reading: `path` is a store directory;
 * `dataset` an array or OME-Zarr image inside it.
 *
 * @example const vol = await openZarrVolume('em.ome.zarr', { scale: 1 }); const z0 = await vol.read([0, 0, 0], [1, 512, 512]);
 */
export async function openZarrVolume(path: string, options: OpenZarrOptions = {}): Promise<ZarrVolume> {
  try {
    if (!(await stat(path)).isDirectory()) throw new DataError(path, 'is a file, not a directory', EXPECTED_NODE);
  } catch (err) {
    if (err instanceof DataError) throw err;
    throw new DataError(path, describeFsError(err), EXPECTED_NODE);
  }
  const store = new AtomicDirectoryStore(path);
  const dataset = (options.dataset ?? '').replace(/^\/+|\/+$/g, '');
  const where = dataset ? join(path, dataset) : path;
  let location = zarr.root(store).resolve(dataset);
  let node = await openNode(location, where);
  let arrayPath = where;
  if (node instanceof zarr.Group) {
    const scales = multiscales(node.attrs);
    if (!scales) {
      const children = await childNodes(where);
      throw new DataError(
        where,
        'is a Zarr group, not an array, and has no OME-Zarr multiscales metadata',
        `an array: name one inside it with the dataset${children.length ? ` (it holds: ${children.join(', ')})` : ''}`,
      );
    }
    const levels = scales[0].datasets;
    const scale = options.scale ?? 0;
    if (!(Number.isInteger(scale) && scale >= 0 && scale < levels.length))
      throw new DataError(where, `has ${levels.length} OME-Zarr scale level(s) (${levels.map((d) => d.path).join(', ')}); scale ${scale} does not exist`);
    location = location.resolve(levels[scale].path);
    arrayPath = join(where, levels[scale].path);
    node = await openNode(location, arrayPath);
    if (node instanceof zarr.Group) throw new DataError(arrayPath, 'is a Zarr group; its OME-Zarr multiscales name it as a scale level array');
  } else if (options.scale !== undefined && options.scale !== 0) {
    throw new DataError(where, `is a plain Zarr array; scale ${options.scale} needs an OME-Zarr image (a group with multiscales metadata)`);
  }
  const array = node;
  const readable = options.labels ? LABELS : READABLE;
  if (!readable.includes(array.dtype as ZarrDtype))
    throw new DataError(arrayPath, `has dtype ${array.dtype}`, `an array of ${readable.join(', ')} ${options.labels ? 'values' : 'grey values'}`);
  const shape = array.shape;
  const spatial = Math.min(3, shape.length);
  if (shape.length < 2 || shape.slice(0, shape.length - spatial).some((n) => n !== 1))
    throw new DataError(arrayPath, `has ${shape.length} dimension(s) ${fmt(shape)}`, '2 (y, x) or 3 (z, y, x) dimensions, after leading axes of size 1');
  const format: ZarrFormat = (await exists(join(arrayPath, 'zarr.json'))) ? 3 : 2;
  return new ZarrVolume(arrayPath, array, format);
}

export interface CreateZarrOptions {
  /** Spatial shape, [z, y, x] or [y, x]. */
  shape: readonly number[];
  chunks: readonly number[];
  /** uint8 / uint16 probabilities or masks, uint16 / uint32 instance labels. */
  dtype: 'uint8' | 'uint16' | 'uint32';
  /** Zarr format, default 3. */
  format?: ZarrFormat;
  /**
   * Write an OME-Zarr image: `path` becomes a group with single-scale multiscales metadata (0.5
   * for v3, 0.4 for v2) and the array is its dataset "0".
   */
  ome?: { name?: string };
  /** Attributes of the array. */
  attributes?: Record<string, unknown>;
}

const json = (value: unknown) => new TextEncoder().encode(`${JSON.stringify(value, null, 2)}\n`);

/** The array's metadata document and file name, as zarrita (v3) or zarr-python (v2) write it. */
function arrayMetadata(o: CreateZarrOptions): { file: string; value: Record<string, unknown> } {
  if ((o.format ?? 3) === 2) {
    return {
      file: '.zarray',
      value: {
        zarr_format: 2,
        shape: [...o.shape],
        chunks: [...o.chunks],
        dtype: { uint8: '|u1', uint16: '<u2', uint32: '<u4' }[o.dtype],
        compressor: { id: 'zlib', level: 1 },
        fill_value: 0,
        order: 'C',
        filters: null,
        dimension_separator: '/',
      },
    };
  }
  return {
    file: 'zarr.json',
    value: {
      zarr_format: 3,
      node_type: 'array',
      shape: [...o.shape],
      data_type: o.dtype,
      chunk_grid: { name: 'regular', configuration: { chunk_shape: [...o.chunks] } },
      chunk_key_encoding: { name: 'default', configuration: { separator: '/' } },
      codecs: [
        { name: 'bytes', configuration: { endian: 'little' } },
        { name: 'gzip', configuration: { level: 1 } },
      ],
      fill_value: 0,
      attributes: o.attributes ?? {},
    },
  };
}

/** The OME-Zarr image group metadata (files and documents) for one scale level at "0". */
function omeGroup(o: CreateZarrOptions): { file: string; value: Record<string, unknown> }[] {
  const axes = (o.shape.length === 3 ? ['z', 'y', 'x'] : ['y', 'x']).map((name) => ({ name, type: 'space' }));
  const image = {
    name: o.ome?.name ?? 'image',
    axes,
    datasets: [{ path: '0', coordinateTransformations: [{ type: 'scale', scale: o.shape.map(() => 1) }] }],
  };
  if ((o.format ?? 3) === 2)
    return [
      { file: '.zgroup', value: { zarr_format: 2 } },
      { file: '.zattrs', value: { multiscales: [{ version: '0.4', ...image }] } },
    ];
  return [{ file: 'zarr.json', value: { zarr_format: 3, node_type: 'group', attributes: { ome: { version: '0.5', multiscales: [image] } } } }];
}

/**
 * Creates (or reuses, when one with the same shape, chunks, dtype and format exists) an output
 * array at `path`, or an OME-Zarr image with the array at `path/0`. Returns it opened for writing.
 * An existing array that differs is refused, naming both.
 *
 * @example const out = await createZarrVolume('pred.zarr', { shape: [64, 2048, 2048], chunks: [8, 256, 256], dtype: 'uint8', ome: {} });
 */
export async function createZarrVolume(path: string, options: CreateZarrOptions): Promise<ZarrVolume> {
  const { shape, chunks, dtype } = options;
  if (!(shape.length === 2 || shape.length === 3) || chunks.length !== shape.length)
    throw new DataError(path, `output shape ${fmt(shape)} with chunks ${fmt(chunks)}`, '2 or 3 dimensions and one chunk size per dimension');
  if ([...shape, ...chunks].some((n) => !(Number.isInteger(n) && n >= 1)))
    throw new DataError(path, `output shape ${fmt(shape)} with chunks ${fmt(chunks)}`, 'positive whole numbers');
  if (dtype !== 'uint8' && dtype !== 'uint16' && dtype !== 'uint32')
    throw new DataError(path, `output dtype ${JSON.stringify(dtype)}`, 'uint8, uint16 or uint32');
  const format = options.format ?? 3;
  const arrayDir = options.ome ? join(path, '0') : path;
  const meta = arrayMetadata(options);
  const existing = await openZarrVolume(path, { labels: true }).catch((err: unknown) => {
    if (err instanceof DataError && err.path === path && /is not a Zarr array or group|does not exist/.test(err.message)) return null;
    throw err;
  });
  if (existing) {
    const same =
      existing.path === arrayDir &&
      existing.format === format &&
      existing.dtype === dtype &&
      fmt(existing.shape) === fmt(shape) &&
      fmt(existing.chunks) === fmt(chunks);
    if (!same)
      throw new DataError(
        path,
        `already holds a Zarr v${existing.format} ${existing.dtype} array ${fmt(existing.shape)} in chunks ${fmt(existing.chunks)}${existing.path === arrayDir ? '' : ` at ${existing.path}`}`,
        `a v${format} ${dtype} array ${fmt(shape)} in chunks ${fmt(chunks)}${options.ome ? ' in an OME-Zarr image' : ''}: choose another output or remove it`,
      );
    return existing;
  }
  await writeFileAtomic(join(arrayDir, meta.file), json(meta.value));
  if (format === 2 && options.attributes) await writeFileAtomic(join(arrayDir, '.zattrs'), json(options.attributes));
  // the group's metadata last: a reader that finds the image finds its array too
  if (options.ome) for (const m of omeGroup(options)) await writeFileAtomic(join(path, m.file), json(m.value));
  return openZarrVolume(path, { labels: true });
}
