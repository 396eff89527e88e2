import { realpathSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { backendInfo, backendTags, tf, type Tensor, type Tensor4D } from '@emseg/tf';

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
    // Provisioned from the PyPI wheel: the cached library lives in .../tensorflow-cpu-<version>/;
    // provisioned by tfjs-node's own download: the file is libtensorflow.so.<version>.
    const paths = readdirSync(libDir).map((f) => realpathSync(join(libDir, f)));
    const { tensorflowVersion } = backendInfo();
    expect(tensorflowVersion).toMatch(/^\d+\.\d+\.\d+/);
    expect(paths.some((p) => p.includes(`tensorflow-cpu-${tensorflowVersion}/`) || p.endsWith(`.so.${tensorflowVersion}`))).toBe(true);
  });

  it('flattens backend info into MLflow tags', () => {
    const tags = backendTags();
    expect(tags['emseg.backend.native']).toBe('true');
    expect(tags['emseg.backend.tensorflowVersion']).toBe(backendInfo().tensorflowVersion);
  });
});

describe('native kernels', () => {
  it('conv2d gradient matches a central finite-difference estimate', () => {
    // float64 is not available in tfjs; float32 central differences with eps 1e-2 on a smooth loss
    // are accurate to ~1e-3 relative.
    const x = tf.randomNormal([1, 6, 6, 2], 0, 1, 'float32', 1) as Tensor4D;
    const w = tf.randomNormal([3, 3, 2, 3], 0, 0.5, 'float32', 2) as Tensor4D;
    const loss = (wt: Tensor) => tf.tidy(() => tf.conv2d(x, wt as Tensor4D, 1, 'same').square().sum());
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
        tf.layers.conv2d({ inputShape: [8, 8, 1], filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }) }),
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
