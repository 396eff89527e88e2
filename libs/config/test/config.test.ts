import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, flatten, loadConfig, parseOverride, type Schema } from '@emseg/config';

interface Cfg {
  name: string;
  optimizer: { lr: number; momentum: number; milestones: number[] };
  schedule: 'step' | 'cosine';
}

const schema: Schema<Cfg> = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'optimizer', 'schedule'],
  properties: {
    name: { type: 'string', minLength: 1 },
    optimizer: {
      type: 'object',
      additionalProperties: false,
      required: ['lr', 'momentum', 'milestones'],
      properties: {
        lr: { type: 'number', exclusiveMinimum: 0 },
        momentum: { type: 'number', minimum: 0, maximum: 1, default: 0.9 },
        milestones: { type: 'array', items: { type: 'integer', minimum: 0 }, default: [] },
      },
    },
    schedule: { type: 'string', enum: ['step', 'cosine'], default: 'step' },
  },
};

function tmp(files: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'emseg-config-'));
  for (const [name, content] of Object.entries(files)) {
    writeFileSync(join(dir, name), typeof content === 'string' ? content : JSON.stringify(content));
  }
  return dir;
}

describe('loadConfig', () => {
  it('fills schema defaults and applies overrides last', () => {
    const dir = tmp({ 'a.json': { name: 'quick', optimizer: { lr: 0.015 } } });
    const cfg = loadConfig(schema, { file: join(dir, 'a.json'), overrides: ['optimizer.milestones=[120,160]', 'schedule=cosine'] });
    expect(cfg).toEqual({ name: 'quick', optimizer: { lr: 0.015, momentum: 0.9, milestones: [120, 160] }, schedule: 'cosine' });
  });

  it('follows "extends" relative to the file, child values winning', () => {
    const dir = tmp({
      'base.json': { $comment: 'the paper', name: 'paper', optimizer: { lr: 0.015, momentum: 0.8 } },
      'child.json': { extends: './base.json', $comment: 'quick', optimizer: { lr: 0.1 } },
    });
    const cfg = loadConfig(schema, { file: join(dir, 'child.json') });
    expect(cfg.optimizer).toEqual({ lr: 0.1, momentum: 0.8, milestones: [] });
    expect(cfg.name).toBe('paper');
  });

  it('names the file and every bad field', () => {
    const dir = tmp({ 'bad.json': { name: 'x', optimizer: { lr: -1, momentum: 2 }, schedul: 'step' } });
    const file = join(dir, 'bad.json');
    expect(() => loadConfig(schema, { file })).toThrow(ConfigError);
    try {
      loadConfig(schema, { file });
    } catch (err) {
      const msg = (err as Error).message;
      expect(msg).toContain(file);
      expect(msg).toContain('optimizer.lr must be > 0');
      expect(msg).toContain('optimizer.momentum must be <= 1');
      expect(msg).toContain('schedul is not a known setting');
    }
  });

  it('rejects enum violations with the allowed values', () => {
    expect(() => loadConfig(schema, { base: { name: 'x', optimizer: { lr: 1 } }, overrides: ['schedule=linear'] })).toThrow(
      /schedule must be one of "step", "cosine"/,
    );
  });

  it('gives clear errors for unreadable, non-JSON and cyclic files', () => {
    const dir = tmp({ 'broken.json': '{ "name": ', 'x.json': { extends: './y.json' }, 'y.json': { extends: './x.json' }, 'arr.json': [1] });
    expect(() => loadConfig(schema, { file: join(dir, 'missing.json') })).toThrow(/cannot read config file .*missing\.json: ENOENT/);
    expect(() => loadConfig(schema, { file: join(dir, 'broken.json') })).toThrow(/broken\.json is not valid JSON/);
    expect(() => loadConfig(schema, { file: join(dir, 'x.json') })).toThrow(/"extends" cycle/);
    expect(() => loadConfig(schema, { file: join(dir, 'arr.json') })).toThrow(/must contain a JSON object, got an array/);
  });
});

describe('overrides and flattening', () => {
  it('parses JSON values and keeps plain strings', () => {
    expect(parseOverride('a.b=0.5')).toEqual({ path: ['a', 'b'], value: 0.5 });
    expect(parseOverride('a=hello')).toEqual({ path: ['a'], value: 'hello' });
    expect(parseOverride('a=[1,2]')).toEqual({ path: ['a'], value: [1, 2] });
    expect(() => parseOverride('novalue')).toThrow(/key\.path=value/);
    expect(() => parseOverride('a..b=1')).toThrow(/empty key segment/);
  });

  it('flattens nested configs into MLflow-style params', () => {
    expect(flatten({ name: 'q', optimizer: { lr: 0.015, milestones: [120, 160] }, on: true })).toEqual({
      name: 'q',
      'optimizer.lr': '0.015',
      'optimizer.milestones': '[120,160]',
      on: 'true',
    });
  });
});
