/**
 * Pure rules, no server: MLflow's naming and length rules, param stringification, secret
 * redaction, tracking URIs, artifact paths, dataset inputs, JSON with NaN.
 */
import { describe, expect, it } from 'vitest';
import {
  flattenParams,
  isSecretKey,
  parseRunsUri,
  parseTrackingUri,
  redactUri,
  stringifyParam,
  toDatasetInput,
  TrackingInputError,
  validateExperimentName,
  validateKey,
  validateMetric,
  validateParam,
  validateTag,
} from '@emseg/tracking';
import { validateArtifactPath } from '../src/artifacts.js';
import { decodeDouble, encodeJson } from '../src/json-codec.js';
import { SecretRedactor } from '../src/secrets.js';
import { pythonNormpath } from '../src/validate.js';

function inputError(fn: () => unknown): TrackingInputError {
  try {
    fn();
  } catch (err) {
    if (err instanceof TrackingInputError) return err;
    throw err;
  }
  throw new Error('expected a TrackingInputError');
}

describe('keys follow MLflow server rules', () => {
  it('accepts the characters MLflow accepts', () => {
    for (const key of ['loss', 'train/loss', 'val/f1 score', 'lr:group-0', 'a.b_c-d', 'verlust_äö', '数据']) {
      expect(validateKey('metric', key)).toBe(key);
    }
  });

  it('rejects other characters with a message naming the key and the rule', () => {
    const err = inputError(() => validateKey('metric', 'loss@val'));
    expect(err.field).toBe('metric key');
    expect(err.message).toContain('"loss@val"');
    expect(err.message).toContain('alphanumerics, underscores');
  });

  it('rejects names that alias other names as file paths', () => {
    for (const key of ['a/../b', '/abs', 'a//b', 'a/', './a', '..', '..a', 'a/.']) {
      const err = inputError(() => validateKey('param', key));
      expect(err.message).toContain('must not resolve to another name');
    }
  });

  it('rejects empty and over-long keys', () => {
    expect(inputError(() => validateKey('tag', '')).message).toContain('non-empty');
    expect(validateKey('tag', 'k'.repeat(250))).toHaveLength(250);
    expect(inputError(() => validateKey('tag', 'k'.repeat(251))).message).toContain('250 characters');
  });

  it('normalises paths exactly like Python posixpath.normpath', () => {
    const python: Array<[string, string]> = [
      ['a//b/./c/', 'a/b/c'],
      ['', '.'],
      ['a/../b', 'b'],
      ['/abs', '/abs'],
      ['//x', '//x'],
      ['///x', '/x'],
      ['..a', '..a'],
      ['a/..', '.'],
      ['../a', '../a'],
      ['./a', 'a'],
      ['x/../../y', '../y'],
      ['//a/../..', '//'],
    ];
    for (const [input, expected] of python) expect(pythonNormpath(input)).toBe(expected);
  });
});

describe('params', () => {
  it('stringifies values the way the UI should show them', () => {
    expect(stringifyParam('lr', 0.015)).toBe('0.015');
    expect(stringifyParam('steps', 200)).toBe('200');
    expect(stringifyParam('bn', false)).toBe('false');
    expect(stringifyParam('none', null)).toBe('null');
    expect(stringifyParam('milestones', [120, 160])).toBe('[120,160]');
    expect(stringifyParam('aug', { flip: true })).toBe('{"flip":true}');
    expect(stringifyParam('name', 'resnet50')).toBe('resnet50');
    expect(inputError(() => stringifyParam('x', undefined)).message).toContain("param 'x'");
  });

  it('allows 6000 characters and refuses 6001 with a clear error (the server would truncate silently)', () => {
    expect(validateParam('long', 'x'.repeat(6000))).toHaveLength(6000);
    const err = inputError(() => validateParam('long', 'x'.repeat(6001)));
    expect(err.field).toBe("param 'long'");
    expect(err.message).toContain('6001 characters');
    expect(err.message).toContain('6000');
  });

  it('counts characters as Python does (code points, not UTF-16 units)', () => {
    expect(validateParam('emoji', '😀'.repeat(6000))).toHaveLength(12_000);
    expect(() => validateParam('emoji', '😀'.repeat(6001))).toThrow(TrackingInputError);
  });

  it('flattens nested configs into dotted keys', () => {
    expect(flattenParams({ optimizer: { lr: 0.015, milestones: [120, 160] }, model: 'r50', skip: undefined })).toEqual({
      'optimizer.lr': 0.015,
      'optimizer.milestones': [120, 160],
      model: 'r50',
    });
  });
});

describe('tags, metrics, experiments', () => {
  it('limits tag values to 8000 characters', () => {
    expect(validateTag('note', 'n'.repeat(8000))).toHaveLength(8000);
    expect(inputError(() => validateTag('note', 'n'.repeat(8001))).message).toContain('8000');
    expect(inputError(() => validateTag('note', 5 as unknown as string)).message).toContain('expected a string');
  });

  it('accepts NaN and infinite metric values but not bad steps or timestamps', () => {
    expect(() => validateMetric('loss', NaN, 0, 0)).not.toThrow();
    expect(() => validateMetric('loss', Infinity, 0, 0)).not.toThrow();
    expect(inputError(() => validateMetric('loss', 1, 1.5, 0)).field).toBe("metric 'loss' step");
    expect(inputError(() => validateMetric('loss', 1, 0, -1)).field).toBe("metric 'loss' timestamp");
    expect(inputError(() => validateMetric('loss', '1' as unknown as number, 0, 0)).field).toBe("metric 'loss' value");
  });

  it('refuses empty and over-long experiment names', () => {
    expect(() => validateExperimentName('')).toThrow(/experiment name/);
    expect(() => validateExperimentName('e'.repeat(501))).toThrow(/500/);
  });
});

describe('secrets never leave the process', () => {
  it('recognises secret-looking keys', () => {
    for (const key of ['password', 'db.password', 'MLFLOW_TRACKING_TOKEN', 'apiKey', 'api_key', 'client_secret', 'authorization']) {
      expect(isSecretKey(key)).toBe(true);
    }
    for (const key of ['lr', 'batch_size', 'encoder', 'momentum']) expect(isSecretKey(key)).toBe(false);
  });

  it('replaces known secret values anywhere and whole values of secret keys', () => {
    const redactor = new SecretRedactor(['s3cr3t-token', undefined, 'ab']);
    expect(redactor.redact('Bearer s3cr3t-token failed')).toBe('Bearer *** failed');
    expect(redactor.redact('ab stays: too short to be a secret')).toBe('ab stays: too short to be a secret');
    expect(redactor.redactEntry('db_password', 'hunter22')).toBe('***');
    expect(redactor.redactEntry('cmd', '--token=s3cr3t-token')).toBe('--token=***');
  });

  it('strips userinfo and secret query values from URIs', () => {
    expect(redactUri('https://alice:pw@mlflow.example.org:8443/prefix?token=abc&x=1')).toBe('https://mlflow.example.org:8443/prefix?token=***&x=1');
  });

  it('moves URI userinfo into credentials and refuses non-http stores with a hint', () => {
    expect(parseTrackingUri('http://bob:p%40ss@127.0.0.1:5000/')).toEqual({ baseUrl: 'http://127.0.0.1:5000', username: 'bob', password: 'p@ss' });
    const err = inputError(() => parseTrackingUri('sqlite:///mlflow.db'));
    expect(err.message).toContain('http(s)');
    expect(err.message).toContain('npm run mlflow');
  });
});

describe('artifact paths and runs URIs', () => {
  it('accepts relative paths and refuses escaping or odd ones', () => {
    expect(validateArtifactPath('checkpoints/epoch-3')).toBe('checkpoints/epoch-3');
    expect(validateArtifactPath('')).toBe('');
    for (const bad of ['../x', '/abs', 'a//b', 'a/', 'a\\b', '.']) expect(() => validateArtifactPath(bad)).toThrow(TrackingInputError);
  });

  it('parses runs:/ URIs', () => {
    expect(parseRunsUri('runs:/0d8f3c0a9b5e4f6b8a7c6d5e4f3a2b1c/encoder/bundle')).toEqual({
      runId: '0d8f3c0a9b5e4f6b8a7c6d5e4f3a2b1c',
      path: 'encoder/bundle',
    });
    expect(parseRunsUri('runs:/abc123/')).toEqual({ runId: 'abc123', path: '' });
    expect(() => parseRunsUri('s3://bucket/x')).toThrow(/runs:\//);
  });
});

describe('dataset inputs', () => {
  it('stores a path source as {"uri": ...} with a guessed source type and the context tag', () => {
    expect(toDatasetInput({ name: 'urisc-track2', digest: 'a1b2c3', source: '/data/urisc/track2', context: 'training' })).toEqual({
      dataset: { name: 'urisc-track2', digest: 'a1b2c3', sourceType: 'local', source: '{"uri":"/data/urisc/track2"}' },
      tags: { 'mlflow.data.context': 'training' },
    });
    expect(toDatasetInput({ name: 'cem', digest: 'd', source: 'https://example.org/cem500k' }).dataset.sourceType).toBe('http');
  });

  it('refuses digests over 36 characters and empty names', () => {
    expect(() => toDatasetInput({ name: 'x', digest: 'd'.repeat(37), source: '/x' })).toThrow(/digest.*36/);
    expect(() => toDatasetInput({ name: '', digest: 'd', source: '/x' })).toThrow(/name/);
  });
});

describe('JSON for MLflow', () => {
  it('sends non-finite doubles as strings and reads them back', () => {
    expect(encodeJson({ a: NaN, b: Infinity, c: -Infinity, d: 0.5 })).toBe('{"a":"NaN","b":"Infinity","c":"-Infinity","d":0.5}');
    expect(decodeDouble('NaN')).toBeNaN();
    expect(decodeDouble('-Infinity')).toBe(-Infinity);
    expect(decodeDouble(0.25)).toBe(0.25);
  });
});
