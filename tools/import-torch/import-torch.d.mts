import type { EncoderJson } from '@emseg/models';

export interface ImportTorchOptions {
  /** A torch.save file: a state_dict, or a checkpoint holding one ("state_dict", "model", ...). */
  checkpoint: string;
  /** The encoder bundle directory to create. */
  out: string;
  /** Key prefix in front of the ResNet, e.g. "module.encoder_q."; detected when omitted. */
  prefix?: string;
  /** Input channels of the imported encoder (default 1; a 3-channel conv1 is summed). */
  inChannels?: number;
  /** Input normalisation; required unless the checkpoint carries "norms". */
  normalization?: { mean: number | number[]; std: number | number[] };
  pixelSizeNm?: number | null;
  /** Python with torch; default $EMSEG_PYTHON, the project .venv, or python3. */
  python?: string;
  /** Let torch.load unpickle arbitrary objects (trusted files only). */
  trustPickle?: boolean;
  /** Replace an existing bundle directory. */
  overwrite?: boolean;
}

export interface ImportTorchResult {
  dir: string;
  meta: EncoderJson;
  prefix: string;
  ignored: string[];
  warnings: string[];
}

export function defaultPython(): string;
export function importTorchCheckpoint(options: ImportTorchOptions): Promise<ImportTorchResult>;
