/**
 * Demo: MicroAdam, AdamW and AMSGrad train the same MLP (784-256-128-10) on
 * Fashion-MNIST on WebGPU, from the same initial weights on the same data,
 * and the demo prints each one's test accuracy and optimizer memory. A short
 * version of the README's comparison (`bench/train_compare.ts`): one epoch
 * (469 steps of 128 images) instead of 10, about half a minute to a minute on
 * a 2-core machine without a GPU (WebGPU on Mesa's llvmpipe).
 *
 *   deno task demo [--steps N] [--batch N] [--optimizers a,b] [--seed N]
 *                  [--data auto|synthetic|FOLDER] [--help]
 *
 * Without the data set (Debian: `apt-get install dataset-fashion-mnist`) it
 * says how to get it and runs on a synthetic 10-class image task instead.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { DatasetError, GpuUnavailableError, requestDevice } from "./mod.ts";
import { defaultConfig, type TrainConfig } from "./src/train/config.ts";
import { loadData } from "./src/train/data.ts";
import { HOW_TO_GET_FASHION_MNIST } from "./src/data/fashion_mnist.ts";
import { syntheticImageData } from "./src/data/synthetic.ts";
import { subset } from "./src/data/images.ts";
import type { ImageData } from "./src/data/images.ts";
import { OPTIMIZER_NAMES } from "./src/train/optimizer.ts";
import { ensureRuntimeDir } from "./src/train/runtime_dir.ts";
import { Trainer, type TrainResult } from "./src/train/trainer.ts";
import { TUNED_LR } from "./src/train/tuned.ts";

const HELP = `usage: deno task demo [options]

Trains the MLP 784-256-128-10 on Fashion-MNIST with MicroAdam, AdamW and
AMSGrad (each at its tuned learning rate, cosine decay) and prints each
one's test accuracy and optimizer state.

  --steps N          training steps per optimizer (default 469: one epoch)
  --batch N          images per step (default 128)
  --optimizers LIST  any of microadam,adamw,amsgrad,adam (default microadam,adamw,amsgrad)
  --seed N           initial weights and data order (default 1)
  --data D           auto (${"/usr/share/datasets/fashion-mnist"}), synthetic, or a folder
  --help             this text`;

const fmt = (n: number) => n.toLocaleString("en-US");

function positiveInt(
  name: string,
  raw: string | undefined,
  fallback: number,
): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) {
    throw new RangeError(`--${name}: expected an integer >= 1, got "${raw}"`);
  }
  return n;
}

async function main(): Promise<number> {
  ensureRuntimeDir();
  const { values: v } = parseArgs({
    args: Deno.args,
    options: {
      steps: { type: "string" },
      batch: { type: "string" },
      optimizers: { type: "string" },
      seed: { type: "string" },
      data: { type: "string" },
      help: { type: "boolean" },
    },
    strict: true,
  });
  if (v.help) {
    console.log(HELP);
    return 0;
  }
  // One epoch: 469 batches of 128 cover the 60,000 training images.
  const steps = positiveInt("steps", v.steps, 469);
  const batch = positiveInt("batch", v.batch, 128);
  const seed = Number(v.seed ?? 1);
  if (!Number.isInteger(seed) || seed < 0) {
    throw new RangeError(`--seed: expected an integer >= 0, got "${v.seed}"`);
  }
  const names = (v.optimizers ?? "microadam,adamw,amsgrad").split(",").map((
    s,
  ) => s.trim().toLowerCase()) as TrainConfig["optimizer"][];
  for (const n of names) {
    if (!(n in OPTIMIZER_NAMES)) {
      throw new RangeError(
        `--optimizers: unknown "${n}" (expected microadam, adamw, amsgrad, adam)`,
      );
    }
  }

  const base: TrainConfig = {
    ...defaultConfig(),
    data: v.data ?? "auto",
    batch_size: batch,
    epochs: 1,
    seed,
    train_subset: steps * batch,
    progress: false,
    log_every: steps,
  };
  let data: ImageData;
  try {
    data = await loadData(base);
  } catch (e) {
    if (!(e instanceof DatasetError) || base.data !== "auto") throw e;
    console.log(
      `Fashion-MNIST is not installed. ${HOW_TO_GET_FASHION_MNIST}\n` +
        "Running on a synthetic 10-class image task instead: the accuracies below are not Fashion-MNIST's.\n",
    );
    const synth = syntheticImageData({
      train: steps * batch,
      test: 10000,
      seed: 0,
    });
    data = { ...synth, train: subset(synth.train, steps * batch) };
  }
  const device = await requestDevice();
  const info = (await navigator.gpu.requestAdapter({
    powerPreference: "high-performance",
  }))?.info;
  const software = info?.isFallbackAdapter ||
    /llvmpipe|lavapipe|swiftshader|software/i.test(info?.description ?? "");
  const adapter = `${info?.description || info?.vendor || "unknown adapter"}${
    software ? " (software adapter)" : ""
  }`;

  console.log(
    `MicroAdam demo: the MLP 784-256-128-10 trained on ${data.source}, ${steps} steps of ${batch} images (${
      fmt(data.train.count)
    } training images, seen once), cosine lr decay; test accuracy on ${
      fmt(data.test.count)
    } images`,
  );
  console.log(
    `device: ${adapter} · WebGPU; each step (gather, forward, backward, optimizer) is one command encoder`,
  );

  const rows: { name: string; lr: number; r: TrainResult; wall: number }[] = [];
  for (const opt of names) {
    const config = { ...base, optimizer: opt, lr: TUNED_LR[opt] };
    const t0 = performance.now();
    const trainer = new Trainer(device, config, data);
    const r = await trainer.train();
    trainer.dispose();
    const wall = (performance.now() - t0) / 1000;
    rows.push({ name: OPTIMIZER_NAMES[opt], lr: config.lr, r, wall });
    console.log(
      `  ${OPTIMIZER_NAMES[opt].padEnd(9)} done in ${wall.toFixed(1)} s`,
    );
  }
  device.destroy();

  const header = [
    "optimizer",
    "lr",
    "test accuracy",
    "state bytes",
    "B/param",
    "samples/s",
    "time s",
  ];
  const table = rows.map(({ name, lr, r, wall }) => [
    name,
    String(lr),
    `${(100 * r.testAccuracy).toFixed(2)} %`,
    fmt(r.stateBytes),
    (r.stateBytes / r.paramCount).toFixed(3),
    fmt(Math.round(r.samplesPerSecond)),
    wall.toFixed(1),
  ]);
  const widths = header.map((h, i) =>
    Math.max(h.length, ...table.map((row) => row[i].length))
  );
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])))
      .join("   ");
  console.log(`\n${line(header)}\n${"─".repeat(line(header).length)}`);
  for (const row of table) console.log(line(row));

  const notes = [
    `\nlr: each optimizer's best on the comparison's grid (src/train/tuned.ts, README "Training"); state bytes: opt.stateBytes(), the optimizer state alone.`,
  ];
  const micro = rows.find((x) => x.name === "MicroAdam");
  const adamw = rows.find((x) => x.name === "AdamW");
  if (micro && adamw) {
    const gap = 100 * (adamw.r.testAccuracy - micro.r.testAccuracy);
    notes.push(
      `MicroAdam keeps ${
        (adamw.r.stateBytes / micro.r.stateBytes).toFixed(1)
      }× less optimizer state than AdamW; its test accuracy is ${
        Math.abs(gap).toFixed(2)
      } points ${gap >= 0 ? "below" : "above"} AdamW's after ${steps} steps.`,
    );
  }
  notes.push(
    'The full comparison (10 epochs, 3 seeds, lr grid): README "Training"; train one yourself with `deno task train`.',
  );
  console.log(notes.join("\n"));
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (e) {
    // node:util's parseArgs: an unknown flag or a flag without its value.
    if (String((e as { code?: unknown }).code).startsWith("ERR_PARSE_ARGS")) {
      console.error(
        `demo: ${
          (e as Error).message
        } (deno task demo --help lists the options)`,
      );
      Deno.exit(2);
    }
    if (
      e instanceof GpuUnavailableError || e instanceof RangeError ||
      e instanceof DatasetError
    ) {
      console.error(`demo: ${(e as Error).message}`);
      Deno.exit(1);
    }
    throw e;
  }
}
