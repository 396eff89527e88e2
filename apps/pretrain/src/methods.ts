/**
 * The method registry: every self-supervised method by name, as models' `createEncoder` keeps the
 * encoders. Adding a method = its file (implementing `SslMethod`, method.ts), one entry here and
 * its config section (config.ts).
 */
import { Byol } from './byol.js';
import type { MethodContext, SslMethod } from './method.js';
import { MocoV2 } from './mocov2.js';

interface MethodEntry {
  /** How people write it, for descriptions: "MoCoV2", "BYOL". */
  readonly title: string;
  create(context: MethodContext): SslMethod;
}

const METHODS = {
  mocov2: { title: 'MoCoV2', create: (c) => new MocoV2(c) },
  byol: { title: 'BYOL', create: (c) => new Byol(c) },
} as const satisfies Record<string, MethodEntry>;

/** A registered method's name (the config's `method`). */
export type MethodName = keyof typeof METHODS;

/** The registered method names, the default (`mocov2`) first. */
export function listMethods(): MethodName[] {
  return Object.keys(METHODS) as MethodName[];
}

function entry(name: string): MethodEntry {
  const found = (METHODS as Record<string, MethodEntry>)[name];
  if (!found) throw new Error(`unknown method "${name}": expected one of ${listMethods().join(', ')}`);
  return found;
}

/** "MoCoV2", "BYOL". */
export function methodTitle(name: string): string {
  return entry(name).title;
}

/**
 * Builds the method registered as `name`.
 *
 * @example
 * const method = createMethod(cfg.method, { cfg, optimizer: new Sgd(0.9, 1e-4), totalSteps: 1000 });
 * const { loss, metrics } = trainMethodStep(method, views, lr, step);
 */
export function createMethod(name: string, context: MethodContext): SslMethod {
  return entry(name).create(context);
}
