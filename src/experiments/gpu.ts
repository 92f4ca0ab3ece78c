/**
 * Experiments 1 and 5 on the WebGPU `MicroAdam` (the WGSL kernels), so the
 * notebooks can show the GPU optimizer and its CPU twin agree on them. The
 * objectives' own GPU work is two small kernels beside the optimizer's
 * (`kernels/experiments/`): the box projection of the online problem, and
 * the noisy quadratic's gradient oracle. Nothing is read back until a
 * recorded step.
 *
 * @module
 */

import projectBoxWgsl from "../../kernels/experiments/project_box.wgsl" with {
  type: "text",
};
import noisyQuadraticWgsl from "../../kernels/experiments/noisy_quadratic_grad.wgsl" with {
  type: "text",
};
import { MicroAdam } from "../optim/microadam.ts";
import type { MicroAdamOptions } from "../core/options.ts";
import { createTensor, readTensor, writeTensor } from "../gpu/tensor_io.ts";
import type { GpuTensor } from "../gpu/tensors.ts";
import { bindBuffers } from "../gpu/buffers.ts";
import type { NoisyQuadratic, OnlineLinear } from "./objectives.ts";

const pipelines = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

function pipeline(device: GPUDevice, name: string, code: string) {
  let m = pipelines.get(device);
  if (!m) pipelines.set(device, m = new Map());
  let p = m.get(name);
  if (!p) {
    p = device.createComputePipeline({
      label: name,
      layout: "auto",
      compute: {
        module: device.createShaderModule({ label: name, code }),
        entryPoint: "main",
      },
    });
    m.set(name, p);
  }
  return p;
}

function uniform(device: GPUDevice, data: ArrayBuffer): GPUBuffer {
  const b = device.createBuffer({
    size: data.byteLength,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(b, 0, data);
  return b;
}

function storage(
  device: GPUDevice,
  data: Float32Array<ArrayBuffer>,
): GPUBuffer {
  const b = device.createBuffer({
    size: Math.max(4, data.byteLength),
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(b, 0, data);
  return b;
}

/** What {@link runOnlineLinearGpu} runs. */
export interface OnlineLinearGpuSpec {
  /** The online problem (its gradient does not depend on x). */
  problem: OnlineLinear;
  /** One MicroAdam per entry, all run in lockstep on the same gradients. */
  configs: MicroAdamOptions[];
  /** Steps T. */
  steps: number;
  /** Projection box [lo, hi]. */
  box: [number, number];
  /** Steps after which every run's parameters are read back (ascending). */
  at: readonly number[];
}

/**
 * Runs MicroAdam on an online linear problem on the GPU, one optimizer per
 * config, with the box projection after every step, from x = 0.
 *
 * @returns for each recorded step, each config's parameters.
 */
export async function runOnlineLinearGpu(
  device: GPUDevice,
  spec: OnlineLinearGpuSpec,
): Promise<Map<number, Float32Array[]>> {
  const d = spec.problem.dim;
  const tensors = spec.configs.map((_, i) =>
    createTensor(device, d, { name: `x${i}` })
  );
  const opts = spec.configs.map((c, i) =>
    new MicroAdam(device, [tensors[i]], c)
  );
  const box = new ArrayBuffer(16);
  new Float32Array(box, 0, 2).set(spec.box);
  new Uint32Array(box, 8, 1)[0] = d;
  const boxBuf = uniform(device, box);
  const project = pipeline(device, "project_box", projectBoxWgsl);
  const groups = tensors.map((t) =>
    bindBuffers(device, project.getBindGroupLayout(0), [t.param, boxBuf])
  );
  const out = new Map<number, Float32Array[]>();
  const g = new Float32Array(d);
  let next = 0;
  try {
    for (let t = 1; t <= spec.steps; t++) {
      spec.problem.gradientAt(t, g);
      for (const x of tensors) writeTensor(device, x, g);
      const encoder = device.createCommandEncoder();
      opts.forEach((o) => o.step({ encoder }));
      const pass = encoder.beginComputePass();
      pass.setPipeline(project);
      for (const bg of groups) {
        pass.setBindGroup(0, bg);
        pass.dispatchWorkgroups(Math.ceil(d / 64));
      }
      pass.end();
      device.queue.submit([encoder.finish()]);
      if (next < spec.at.length && spec.at[next] === t) {
        out.set(
          t,
          await Promise.all(tensors.map((x) => readTensor(device, x))),
        );
        next++;
      }
    }
  } finally {
    opts.forEach((o) => o.dispose());
    tensors.forEach(destroyTensor);
    boxBuf.destroy();
  }
  return out;
}

/** What {@link runNoisyQuadraticGpu} runs. */
export interface NoisyQuadraticGpuSpec {
  /** The objective (target and noisy coordinates). */
  problem: NoisyQuadratic;
  /** MicroAdam's options. */
  options: MicroAdamOptions;
  /** Initial parameters. */
  x0: Float32Array;
  /** Steps T. */
  steps: number;
  /** Fills the noise of step t (the CPU twin must draw the same). */
  noise: (t: number, out: Float32Array) => void;
  /** Steps after which the parameters are read back (ascending). */
  at: readonly number[];
}

/**
 * Runs MicroAdam on the noisy quadratic on the GPU: each step the host
 * writes the noise, a kernel forms `g = (x − x*) + ξ` from the parameters
 * on the device, and the optimizer steps, all in one command encoder.
 *
 * @returns the parameters at each recorded step.
 */
export async function runNoisyQuadraticGpu(
  device: GPUDevice,
  spec: NoisyQuadraticGpuSpec,
): Promise<Map<number, Float32Array>> {
  const d = spec.problem.dim;
  const x = createTensor(device, spec.x0, { name: "x" });
  const opt = new MicroAdam(device, [x], spec.options);
  const target = storage(device, Float32Array.from(spec.problem.target));
  const noiseBuf = storage(device, new Float32Array(d));
  const size = new Uint32Array(4);
  size[0] = d;
  const sizeBuf = uniform(device, size.buffer);
  const oracle = pipeline(device, "noisy_quadratic_grad", noisyQuadraticWgsl);
  const group = bindBuffers(device, oracle.getBindGroupLayout(0), [
    x.param,
    target,
    noiseBuf,
    x.grad,
    sizeBuf,
  ]);
  const noise = new Float32Array(d);
  const out = new Map<number, Float32Array>();
  let next = 0;
  try {
    for (let t = 1; t <= spec.steps; t++) {
      spec.noise(t, noise);
      device.queue.writeBuffer(noiseBuf, 0, noise);
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      pass.setPipeline(oracle);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(Math.ceil(d / 64));
      pass.end();
      opt.step({ encoder });
      device.queue.submit([encoder.finish()]);
      if (next < spec.at.length && spec.at[next] === t) {
        out.set(t, await readTensor(device, x));
        next++;
      }
    }
  } finally {
    opt.dispose();
    destroyTensor(x);
    for (const b of [target, noiseBuf, sizeBuf]) b.destroy();
  }
  return out;
}

function destroyTensor(t: GpuTensor): void {
  t.param.destroy();
  t.grad.destroy();
}
