/**
 * The JavaScript peer: TensorFlow.js 4.22 Adam (`tf.train.adam`) on Deno's
 * WebGPU, timed as an application sees it: N `applyGradients` calls issued
 * back to back, then one small readback, host time divided by N (TF.js has
 * no way to time its own GPU work). Gradients rotate between several
 * tensors where they would fit the L2 cache. Run by bench/device.ts in a
 * process of its own (its own device):
 *
 *   deno run -A --no-config bench/tfjs_adam.ts --sizes 20,24,26,28 --steps 50
 *
 * Prints one JSON row per size. TF.js is a bench-only dependency, pinned
 * here and imported dynamically, so that neither type-checking the project
 * nor its import map pulls it in; bench/device.ts runs this file with
 * `--no-config` (its npm cache is all it needs).
 *
 * @module
 */

import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "20,24,26,28" },
    steps: { type: "string", default: "50" },
    // Warm-up in ms of steps before timing (see bench/device.ts).
    "warmup-ms": { type: "string", default: "1800" },
  },
});

/** The part of the TF.js API used here. */
interface Tf {
  setBackend(name: string): Promise<boolean>;
  getBackend(): string;
  ready(): Promise<void>;
  variable(t: unknown): { name: string; dispose(): void };
  randomUniform(shape: number[], lo: number, hi: number): TfTensor;
  slice(t: unknown, begin: number, size: number): TfTensor;
  train: {
    adam(lr: number): {
      applyGradients(g: Record<string, unknown>): void;
      dispose(): void;
    };
  };
}
interface TfTensor {
  data(): Promise<Float32Array>;
  dispose(): void;
}

// In variables: resolved at run time only.
const CORE = "npm:@tensorflow/tfjs-core@4.22.0";
const WEBGPU = "npm:@tensorflow/tfjs-backend-webgpu@4.22.0";
const tf = (await import(CORE)) as unknown as Tf;
await import(WEBGPU);
if (!(await tf.setBackend("webgpu"))) {
  throw new Error("no TF.js webgpu backend");
}
await tf.ready();

const steps = Number(values.steps);
for (const log2 of values.sizes!.split(",").map(Number)) {
  const n = 2 ** log2;
  const sets = n * 16 <= 2 ** 30 ? 4 : 1;
  const vars = Array.from(
    { length: sets },
    () => tf.variable(tf.randomUniform([n], -1, 1)),
  );
  const grads = vars.map(() => tf.randomUniform([n], -1e-2, 1e-2));
  const opts = vars.map(() => tf.train.adam(1e-4));
  const apply = (i: number) =>
    opts[i % sets].applyGradients({ [vars[i % sets].name]: grads[i % sets] });
  const warm = performance.now();
  let probe: TfTensor;
  do {
    for (let i = 0; i < 3 * sets; i++) apply(i);
    probe = tf.slice(vars[0], 0, 1);
    await probe.data();
    probe.dispose();
  } while (performance.now() - warm < Number(values["warmup-ms"]));
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) apply(i);
  probe = tf.slice(vars[(steps - 1) % sets], 0, 1);
  await probe.data();
  const ms = (performance.now() - t0) / steps;
  probe.dispose();
  console.log(JSON.stringify({ label: `2^${log2}`, params: n, ms, sets }));
  for (const x of [...vars, ...grads, ...opts]) x.dispose();
}
