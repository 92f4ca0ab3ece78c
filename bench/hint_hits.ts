/**
 * How often MicroAdam's one-pass select kernel can use its selection hints
 * while a model trains on real data (kernels/microadam_select_fast.wgsl:
 * each top-k block first marks its candidates at the |a| that rank
 * k + k/2 + 8 of its values reached at the step before; the bound from its
 * thread maxima is computed only when that marks fewer than k or more than
 * the candidate list's 256). The benchmark's gradients come from one
 * distribution every step; this measures the same count on the README's
 * training run (MLP 784-256-128-10 on Fashion-MNIST, MicroAdam f32 at its
 * tuned learning rate): after each step, that step's gradient and the state
 * before it give a = g + e on the CPU (the reference's own code), which is
 * compared with the hints read back before the step.
 *
 *     deno run -A bench/hint_hits.ts [--steps 300] [--data auto|synthetic|DIR]
 *
 * Prints, per tensor with one-pass blocks, how many block-steps had a hint,
 * and of those how many marked between k and 256 (used), fewer than k, or
 * more than 256, and how many values a block that used its hint listed on
 * average (each candidate's count loop reads them all). Runs on any WebGPU
 * device (llvmpipe included): which blocks can use their hint depends on the
 * data, not on the device.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { requestDevice } from "../mod.ts";
import { defaultConfig } from "../src/train/config.ts";
import { loadData } from "../src/train/data.ts";
import { Trainer } from "../src/train/trainer.ts";
import { TUNED_LR } from "../src/train/tuned.ts";
import {
  fastPath,
  type MicroAdam,
  readSelectionHints,
} from "../src/optim/microadam.ts";
import { addErrorFeedback } from "../src/reference/microadam.ts";
import { readRanges } from "../src/gpu/buffers.ts";
import type { OptimizerState } from "../src/core/state.ts";
import { u32View } from "../src/core/state_checks.ts";
import type { MicroAdamGeometry } from "../src/core/geometry.ts";
import selectFast from "../kernels/microadam_select_fast.wgsl" with {
  type: "text",
};

/** Block-steps by what the block's hint marked (see {@link countHintUse}). */
export interface HintUse {
  /** No hint yet (0). */
  none: number;
  /** Between k and 256 marked: the hint is used. */
  used: number;
  /** Fewer than k marked: the bound is computed after all. */
  few: number;
  /** More than 256 marked: the bound too, or radix digits. */
  many: number;
  /** Values marked in the block-steps that used their hint, summed (the candidates each one counts). */
  listed: number;
}

/** Candidate list size of the select kernel, read from its CAND_CAP (256). */
export const CAND_CAP: number = candidateCap(selectFast);

function candidateCap(wgsl: string): number {
  const m = /const CAND_CAP: u32 = (\d+)u;/.exec(wgsl);
  if (!m) {
    throw new Error(
      "bench/hint_hits.ts: expected `const CAND_CAP: u32 = <n>u;` in kernels/microadam_select_fast.wgsl, found none",
    );
  }
  return Number(m[1]);
}

/**
 * Adds to `into` what each top-k block of one tensor's step makes of its
 * hint: `a` is the step's a = g + e, `hints` the tensor's hints read before
 * the step (one per block, f32 bits of an |a|), and a block uses its hint
 * when between its k and {@link CAND_CAP} of its |a| are at or above it.
 *
 * @example
 * ```ts
 * import { countHintUse } from "./hint_hits.ts";
 * import { microAdamGeometry } from "../src/core/geometry.ts";
 * const geo = microAdamGeometry(8, { window: 1, density: 0.25, topkBlockSize: 4, efBlockSize: 4 });
 * const hint = new Uint32Array(new Float32Array([1.5]).buffer)[0];
 * const use = { none: 0, used: 0, few: 0, many: 0, listed: 0 };
 * countHintUse(geo, new Float32Array([3, -2, 0, 1, 1, 1, 1, 1]), [hint, hint], use);
 * console.log(use); // { none: 0, used: 1, few: 1, many: 0, listed: 2 }
 * ```
 */
export function countHintUse(
  geo: MicroAdamGeometry,
  a: Float32Array,
  hints: ArrayLike<number>,
  into: HintUse,
): HintUse {
  const keys = new Uint32Array(a.buffer, a.byteOffset, a.length);
  for (let b = 0; b < geo.blocks; b++) {
    const hint = hints[b];
    if (hint === 0) {
      into.none++;
      continue;
    }
    const k = b < geo.fullBlocks ? geo.kBlock : geo.kTail;
    const end = Math.min(geo.length, (b + 1) * geo.blockSize);
    let marked = 0;
    for (let j = b * geo.blockSize; j < end; j++) {
      if ((keys[j] & 0x7fffffff) >= hint) marked++;
    }
    if (marked < k) into.few++;
    else if (marked > CAND_CAP) into.many++;
    else {
      into.used++;
      into.listed += marked;
    }
  }
  return into;
}

if (import.meta.main) await main();

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      steps: { type: "string", default: "300" },
      data: { type: "string", default: "auto" },
    },
  });
  const steps = Number(values.steps);
  if (!Number.isInteger(steps) || steps < 2) {
    throw new RangeError(
      `--steps: expected an integer >= 2, got ${values.steps}`,
    );
  }

  const device = await requestDevice();
  const config = {
    ...defaultConfig(),
    optimizer: "microadam" as const,
    lr: TUNED_LR.microadam,
    data: values.data!,
    epochs: Math.ceil(steps / 469),
    progress: false,
  };
  const trainer = new Trainer(device, config, await loadData(config));
  const opt = trainer.optimizer as MicroAdam;
  const params = trainer.model.parameters();
  const geometry = opt.geometry;
  // Each tensor's first EF block (the hints are one per EF block).
  const efStart = geometry.map((_, i) =>
    geometry.slice(0, i).reduce((n, g) => n + g.efBlocks, 0)
  );

  const counts: HintUse[] = geometry.map(() => ({
    none: 0,
    used: 0,
    few: 0,
    many: 0,
    listed: 0,
  }));

  /** The hints and the EF state before the next step. */
  async function snapshot(): Promise<
    { hints: Uint32Array; state: OptimizerState }
  > {
    return {
      hints: await readSelectionHints(opt),
      state: await opt.stateDict(),
    };
  }

  let before = await snapshot();
  let done = 0;
  await trainer.train({
    afterStep: async () => {
      if (done >= steps) return;
      done++;
      const grads = await readRanges(
        device,
        params.map((p) => ({
          buffer: p.tensor.grad,
          offset: 4 * (p.tensor.offset ?? 0),
          size: 4 * p.tensor.length,
        })),
      );
      geometry.forEach((geo, i) => {
        if (!fastPath(geo)) return;
        const { buffers } = before.state.tensors[i];
        const grad = new Float32Array(
          grads[i].buffer,
          grads[i].byteOffset,
          geo.length,
        );
        const a = addErrorFeedback(
          geo,
          {
            codes: u32View(buffers.codes),
            stats: u32View(buffers.stats),
          },
          grad,
          (x) => x,
        );
        countHintUse(
          geo,
          a,
          before.hints.subarray(efStart[i], efStart[i] + geo.blocks),
          counts[i],
        );
      });
      before = await snapshot();
    },
    shouldStop: () => done >= steps,
  });

  const percent = (x: number, n: number) =>
    n ? `${(100 * x / n).toFixed(1)} %` : "—";
  console.log(
    `MicroAdam f32, lr ${config.lr}, ${done} steps of the MLP 784-256-128-10 (data: ${trainer.dataSource})`,
  );
  console.log(
    "| tensor | elements | blocks | block-steps with a hint | used | fewer than k | more than 256 | listed when used |",
  );
  console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  const total: HintUse = { none: 0, used: 0, few: 0, many: 0, listed: 0 };
  const mean = (c: HintUse) => c.used ? (c.listed / c.used).toFixed(1) : "—";
  geometry.forEach((geo, i) => {
    if (!fastPath(geo)) return;
    const c = counts[i];
    const n = c.used + c.few + c.many;
    for (const key of Object.keys(total) as (keyof HintUse)[]) {
      total[key] += c[key];
    }
    console.log(
      `| ${params[i].name} | ${geo.length} | ${geo.blocks} | ${n} | ${
        percent(c.used, n)
      } | ${percent(c.few, n)} | ${percent(c.many, n)} | ${mean(c)} |`,
    );
  });
  const n = total.used + total.few + total.many;
  console.log(
    `| all | | | ${n} | ${percent(total.used, n)} | ${
      percent(total.few, n)
    } | ${percent(total.many, n)} | ${mean(total)} |`,
  );
  trainer.dispose();
  device.destroy();
}
