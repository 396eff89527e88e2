/**
 * Batches as plain typed arrays (NHW, one channel), the hand-over format between data loading and
 * the step that makes tensors (`tensors.ts`, the only TensorFlow-dependent module here).
 */

/** `size` images of height x width grey values in [0, 1], image-major: data[(n * height + y) * width + x]. */
export interface ImageBatch {
  readonly size: number;
  readonly height: number;
  readonly width: number;
  readonly data: Float32Array;
}

/** `size` binary masks (1 = foreground), laid out like ImageBatch. */
export interface MaskBatch {
  readonly size: number;
  readonly height: number;
  readonly width: number;
  readonly data: Uint8Array;
}

/** Packs equally sized images (each height * width values) into one batch. */
export function stackImages(images: readonly Float32Array[], height: number, width: number): ImageBatch {
  const area = height * width;
  const data = new Float32Array(images.length * area);
  images.forEach((img, i) => {
    if (img.length !== area) throw new Error(`batch item ${i} has ${img.length} values; expected ${height}x${width} = ${area}`);
    data.set(img, i * area);
  });
  return { size: images.length, height, width, data };
}

/** Packs equally sized masks into one batch. */
export function stackMasks(masks: readonly Uint8Array[], height: number, width: number): MaskBatch {
  const area = height * width;
  const data = new Uint8Array(masks.length * area);
  masks.forEach((m, i) => {
    if (m.length !== area) throw new Error(`mask ${i} has ${m.length} values; expected ${height}x${width} = ${area}`);
    data.set(m, i * area);
  });
  return { size: masks.length, height, width, data };
}
