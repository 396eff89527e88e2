import { realpathSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { backendInfo, backendTags, packageOrder, tf, visibleGpus, type Tensor, type Tensor4D } from '@emseg/tf';

describe('backend selection', () => {
  it('loads native TensorFlow, not pure JavaScript, after setup', () => {
    const info = backendInfo();
    expect(info.package).toMatch(/^@tensorflow\/tfjs-node(-gpu)?$/);
    expect(info.backend).toBe('tensorflow');
    expect(info.native).toBe(true);
  });

  it('reports the version of the TensorFlow C library that is actually linked', () => {
    const require = createRequire(import.meta.url);
    const libDir = join(dirname(require.resolve(`${backendInfo().package}/package.json`)), 'deps', 'lib');
    // Provisioned from the PyPI wheel: the cached library lives in .../tensorflow-{cpu,gpu}-<version>/;
    // provisioned by tfjs-node's own download: the file is libtensorflow.so.<version>.
    const paths = readdirSync(libDir).map((f) => realpathSync(join(libDir, f)));
    const { tensorflowVersion } = backendInfo();
    expect(tensorflowVersion).toMatch(/^\d+\.\d+\.\d+/);
    expect(paths.some((p) => (/tensorflow-(cpu|gpu)-/.test(p) && p.includes(`-${tensorflowVersion}/`)) || p.endsWith(`.so.${tensorflowVersion}`))).toBe(true);
  });

  it('flattens backend info into MLflow tags', () => {
    const tags = backendTags();
    expect(tags['emseg.backend.native']).toBe('true');
    expect(tags['emseg.backend.tensorflowVersion']).toBe(backendInfo().tensorflowVersion);
    for (const k of ['device', 'gpuName', 'cudaVersion', 'cudnnVersion']) expect(tags).toHaveProperty(`emseg.backend.${k}`);
  });

  it('picks the CPU package without a visible GPU, even when the GPU build is installed', () => {
    // CPU machines stay on the build their tests were measured with (gpu-build.test.ts covers the
    // GPU build itself); where a GPU is visible the GPU package comes first.
    expect(packageOrder(false, undefined)).toEqual(['@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs']);
    expect(packageOrder(true, undefined)).toEqual(['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node', '@tensorflow/tfjs']);
    expect(packageOrder(true, '@tensorflow/tfjs-node')).toEqual(['@tensorflow/tfjs-node']);
    expect(() => packageOrder(false, 'tfjs-gpu')).toThrow(/EMSEG_TF_PACKAGE=tfjs-gpu is not one of/);
    const info = backendInfo();
    if (!process.env.EMSEG_TF_PACKAGE && visibleGpus().length === 0) expect(info.package).toBe('@tensorflow/tfjs-node');
    if (!info.gpu) {
      expect([info.gpuName, info.gpuDriverVersion, info.cudaVersion, info.cudnnVersion]).toEqual([null, null, null, null]);
      expect(info.device).toMatch(/^CPU \(\d+ cores\)$/);
    }
  });

  it('sees GPUs as nvidia-smi lists them, filtered by CUDA_VISIBLE_DEVICES', () => {
    const dir = mkdtempSync(join(tmpdir(), 'emseg-smi-'));
    const smi = join(dir, 'nvidia-smi');
    writeFileSync(smi, '#!/bin/sh\necho "0, NVIDIA H200, 570.86.15"\necho "1, NVIDIA H200, 570.86.15"\n');
    chmodSync(smi, 0o755);
    const dist = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'index.js');
    const { CUDA_VISIBLE_DEVICES: _cvd, ...base } = process.env;
    const probe = (env: Record<string, string>) => {
      // pure JS: only the probe is under test, no native library needs to load
      const r = spawnSync(
        process.execPath,
        ['--input-type=module', '-e', `import(${JSON.stringify(dist)}).then((m) => console.log(JSON.stringify(m.visibleGpus())))`],
        {
          encoding: 'utf8',
          env: { ...base, EMSEG_TF_PACKAGE: '@tensorflow/tfjs', EMSEG_NVIDIA_SMI: smi, ...env },
        },
      );
      expect(r.status, r.stderr).toBe(0);
      return JSON.parse(r.stdout.trim().split('\n').pop()!);
    };
    try {
      const h200 = (index: number) => ({ index, name: 'NVIDIA H200', driverVersion: '570.86.15' });
      expect(probe({})).toEqual([h200(0), h200(1)]);
      expect(probe({ CUDA_VISIBLE_DEVICES: '1' })).toEqual([h200(1)]);
      expect(probe({ CUDA_VISIBLE_DEVICES: '' })).toEqual([]);
      expect(probe({ CUDA_VISIBLE_DEVICES: '-1' })).toEqual([]);
      expect(probe({ EMSEG_NVIDIA_SMI: join(dir, 'missing') })).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('native kernels', () => {
  it('conv2d gradient matches a central finite-difference estimate', () => {
    // float64 is not available in tfjs; float32 central differences with eps 1e-2 on a smooth loss
    // are accurate to ~1e-3 relative.
    const x = tf.randomNormal([1, 6, 6, 2], 0, 1, 'float32', 1) as Tensor4D;
    const w = tf.randomNormal([3, 3, 2, 3], 0, 0.5, 'float32', 2) as Tensor4D;
    const loss = (wt: Tensor) =>
      tf.tidy(() =>
        tf
          .conv2d(x, wt as Tensor4D, 1, 'same')
          .square()
          .sum(),
      );
    const analytic = tf.grad(loss)(w);
    const wData = w.dataSync();
    const gData = analytic.dataSync();
    const eps = 1e-2;
    for (const i of [0, 7, 20, 33, 53]) {
      const plus = Float32Array.from(wData);
      const minus = Float32Array.from(wData);
      plus[i] += eps;
      minus[i] -= eps;
      const numeric = tf.tidy(() => {
        const lp = loss(tf.tensor(plus, w.shape) as typeof w).dataSync()[0];
        const lm = loss(tf.tensor(minus, w.shape) as typeof w).dataSync()[0];
        return (lp - lm) / (2 * eps);
      });
      expect(Math.abs(numeric - gData[i])).toBeLessThan(1e-2 * Math.max(1, Math.abs(gData[i])));
    }
    tf.dispose([x, w, analytic]);
  });

  it('trains a tiny conv net: loss decreases and no tensors leak across steps', () => {
    const model = tf.sequential({
      layers: [
        tf.layers.conv2d({
          inputShape: [8, 8, 1],
          filters: 4,
          kernelSize: 3,
          padding: 'same',
          activation: 'relu',
          kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }),
        }),
        tf.layers.conv2d({ filters: 1, kernelSize: 1, kernelInitializer: tf.initializers.glorotUniform({ seed: 4 }) }),
      ],
    });
    const x = tf.randomUniform([8, 8, 8, 1], 0, 1, 'float32', 5);
    const y = tf.tidy(() => x.greater(0.5).toFloat());
    const optimizer = tf.train.adam(0.05);
    const step = () =>
      tf.tidy(() => {
        const cost = optimizer.minimize(() => tf.losses.sigmoidCrossEntropy(y, model.apply(x) as typeof x), true);
        return cost!.dataSync()[0];
      });
    const losses = [step(), step()];
    const before = tf.memory().numTensors;
    for (let i = 0; i < 40; i++) losses.push(step());
    expect(tf.memory().numTensors).toBe(before);
    expect(losses[losses.length - 1]).toBeLessThan(0.7 * losses[0]);
    model.dispose();
    optimizer.dispose();
    tf.dispose([x, y]);
  });
});
