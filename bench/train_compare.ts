/**
 * The Fashion-MNIST comparison of the README: the MLP 784-256-128-10 trained
 * with MicroAdam, AdamW and AMSGrad, each at its best learning rate from one
 * log grid, over several seeds; MicroAdam variants (density, window, bf16)
 * against AdamW; and the optimizer's share of the step time.
 *
 *   deno run -A bench/train_compare.ts --phase tune|final|ablate|variant|time|all
 *     [--out DIR] [--epochs N] [--tune-epochs N] [--seeds 1,2,3]
 *     [--grid 1e-4,3e-4,1e-3,...] [--optimizers microadam,adamw,amsgrad]
 *     [--lr-microadam X --lr-adamw X --lr-amsgrad X] [--train-subset N]
 *     [--variant key=value,...] [--measure-optimizer] [--time-steps N]
 *
 * - `tune`: every optimizer at every grid lr, seed 1, `--tune-epochs` epochs
 *   (default grid: the half-decade steps 1e-4 … 3e-2, and 2e-3 and 5e-3
 *   around the optimum).
 * - `final`: every optimizer at its best tuned lr (or `--lr-*`), each seed,
 *   `--epochs` epochs; metrics JSON lines per run for the plot.
 * - `ablate`: MicroAdam at its best lr with one setting changed at a time
 *   (bf16, density, window, both at the default's state size), seed 1; and
 *   MicroAdam and AdamW at twice the epochs.
 * - `variant`: MicroAdam with the `--variant` settings (default
 *   `window=3`, the best ablation) over every seed, a row of the final table.
 * - `time` (or `--measure-optimizer` with any phase): GPU timestamps of the
 *   model's forward+backward pass and the optimizer's step, median over
 *   `--time-steps` steps, per optimizer: the optimizer's share of a step.
 *
 * Every finished run is a line of `DIR/results.jsonl`; a run already there
 * is not repeated, so an interrupted comparison continues where it stopped.
 * Tables are printed from that file (and `bench/plot_training.ts` draws the
 * curves from `DIR/metrics/`).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { requestDevice } from "../mod.ts";
import { defaultConfig, type TrainConfig } from "../src/train/config.ts";
import { loadData } from "../src/train/data.ts";
import { MetricsWriter } from "../src/train/metrics.ts";
import { OPTIMIZER_NAMES } from "../src/train/optimizer.ts";
import { ensureRuntimeDir } from "../src/train/runtime_dir.ts";
import { Trainer } from "../src/train/trainer.ts";
import type { ImageData } from "../src/data/images.ts";

type Opt = TrainConfig["optimizer"];

/** One finished run, as stored in results.jsonl. */
export interface RunRecord {
  /** Which phase ran it. */
  phase: string;
  /** Unique key of the run's settings. */
  key: string;
  /** Its settings (the keys that differ from the base configuration). */
  settings: Partial<TrainConfig>;
  /** Final test accuracy. */
  test_accuracy: number;
  /** Final test loss. */
  test_loss: number;
  /** Test accuracy after each epoch. */
  epoch_accuracy: number[];
  /** Training loss of each epoch. */
  epoch_train_loss: number[];
  /** Optimizer state bytes. */
  state_bytes: number;
  /** Model parameters. */
  params: number;
  /** Training samples per second. */
  samples_per_s: number;
  /** Training seconds. */
  train_seconds: number;
  /** The adapter. */
  device: string;
}

const args = parseArgs({
  args: Deno.args,
  options: {
    phase: { type: "string", default: "all" },
    out: { type: "string", default: "bench/training" },
    epochs: { type: "string", default: "10" },
    "tune-epochs": { type: "string", default: "3" },
    seeds: { type: "string", default: "1,2,3" },
    grid: {
      type: "string",
      default: "1e-4,3e-4,1e-3,2e-3,3e-3,5e-3,1e-2,3e-2",
    },
    optimizers: { type: "string", default: "microadam,adamw,amsgrad" },
    "lr-microadam": { type: "string" },
    "lr-adamw": { type: "string" },
    "lr-amsgrad": { type: "string" },
    "lr-adam": { type: "string" },
    "train-subset": { type: "string", default: "0" },
    "measure-optimizer": { type: "boolean", default: false },
    "time-steps": { type: "string", default: "50" },
    variant: { type: "string", default: "window=3" },
    data: { type: "string", default: "auto" },
  },
  strict: true,
});
const v = args.values;
const OUT = v.out!;
const EPOCHS = Number(v.epochs);
const TUNE_EPOCHS = Number(v["tune-epochs"]);
const SEEDS = v.seeds!.split(",").map(Number);
const GRID = v.grid!.split(",").map(Number);
const OPTS = v.optimizers!.split(",") as Opt[];
const PHASES = v.phase === "all"
  ? ["tune", "final", "ablate"]
  : v.phase!.split(",");
for (const p of PHASES) {
  if (!["tune", "final", "ablate", "variant", "time"].includes(p)) {
    throw new RangeError(
      `--phase: expected tune, final, ablate, variant, time or all, got "${p}"`,
    );
  }
}

/** `--variant key=value,…`: MicroAdam settings of the `variant` phase. */
const VARIANT: Partial<TrainConfig> = Object.fromEntries(
  v.variant!.split(",").filter((kv) => kv).map((kv) => {
    const [k, x] = kv.split("=");
    return [k, Number.isNaN(Number(x)) ? x : Number(x)];
  }),
);

// A run's key holds only its settings beyond BASE, so BASE pins the
// settings the recorded runs were made with (the paper's window of 10), not
// whatever the trainer's defaults are now.
const BASE: TrainConfig = {
  ...defaultConfig(),
  window: 10,
  data: v.data!,
  train_subset: Number(v["train-subset"]),
  progress: false,
  log_every: 100,
};

const RESULTS = join(OUT, "results.jsonl");

async function readResults(): Promise<RunRecord[]> {
  try {
    const text = await Deno.readTextFile(RESULTS);
    return text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
}

const keyOf = (phase: string, s: Partial<TrainConfig>) =>
  `${phase}:${
    Object.entries(s).sort(([a], [b]) => a.localeCompare(b)).map(([k, x]) =>
      `${k}=${JSON.stringify(x)}`
    ).join(",")
  }`;

let device: GPUDevice;
let data: ImageData;
let adapterName = "";

/** The metrics file (JSON lines) of a run. */
function metricsFile(phase: string, settings: Partial<TrainConfig>): string {
  return join(
    OUT,
    "metrics",
    `${phase}_${
      Object.entries(settings).map(([k, x]) => `${k}-${x}`).join("_")
    }.jsonl`,
  );
}

async function run(
  phase: string,
  settings: Partial<TrainConfig>,
  done: RunRecord[],
): Promise<RunRecord> {
  const key = keyOf(phase, settings);
  const have = done.find((r) => r.key === key);
  if (have) return have;
  // The same settings run in another phase: runs are deterministic on a
  // device, so its result stands for this phase too.
  const same = done.find((r) =>
    r.device === adapterName && r.key.split(":")[1] === key.split(":")[1]
  );
  const file = metricsFile(phase, settings);
  if (same) {
    const record = { ...same, phase, key };
    // Its curves too, under this phase's name (for the plot).
    await Deno.copyFile(metricsFile(same.phase, same.settings), file)
      .catch(() => {});
    await Deno.writeTextFile(RESULTS, JSON.stringify(record) + "\n", {
      append: true,
    });
    done.push(record);
    return record;
  }
  const config: TrainConfig = { ...BASE, ...settings };
  const label = Object.entries(settings).map(([k, x]) => `${k}=${x}`).join(
    " ",
  );
  const trainer = new Trainer(device, config, data);
  await Deno.mkdir(join(OUT, "metrics"), { recursive: true });
  await Deno.remove(file).catch(() => {});
  const metrics = await MetricsWriter.open(file);
  const t0 = performance.now();
  const result = await trainer.train({
    onLog: (r) => metrics.write({ ...r, ...settings }),
    onEpoch: async (r) => {
      await metrics.write({ ...r, ...settings });
      console.log(
        `  ${label}: epoch ${r.epoch} test ${
          (100 * r.test_accuracy).toFixed(2)
        } % (${((performance.now() - t0) / 1000).toFixed(0)} s)`,
      );
    },
  });
  metrics.close();
  trainer.dispose();
  const record: RunRecord = {
    phase,
    key,
    settings,
    test_accuracy: result.testAccuracy,
    test_loss: result.testLoss,
    epoch_accuracy: result.epochs.map((e) => e.test_accuracy),
    epoch_train_loss: result.epochs.map((e) => e.train_loss),
    state_bytes: result.stateBytes,
    params: result.paramCount,
    samples_per_s: result.samplesPerSecond,
    train_seconds: result.trainSeconds,
    device: adapterName,
  };
  await Deno.writeTextFile(RESULTS, JSON.stringify(record) + "\n", {
    append: true,
  });
  done.push(record);
  console.log(
    `${label}: test accuracy ${(100 * record.test_accuracy).toFixed(2)} %, ${
      record.samples_per_s.toFixed(0)
    } samples/s`,
  );
  return record;
}

/** Best lr of each optimizer in the tune phase (highest final test accuracy). */
function bestLr(results: RunRecord[], opt: Opt): number | undefined {
  const given = v[`lr-${opt}` as "lr-adamw"];
  if (given) return Number(given);
  const runs = results.filter((r) =>
    r.phase === "tune" && r.settings.optimizer === opt &&
    r.settings.epochs === TUNE_EPOCHS
  );
  runs.sort((a, b) => b.test_accuracy - a.test_accuracy);
  return runs[0]?.settings.lr;
}

const pct = (x: number) => (100 * x).toFixed(2);
const mean = (a: number[]) => a.reduce((s, x) => s + x, 0) / a.length;

function tuneTable(results: RunRecord[]): string {
  const rows = [
    `| optimizer | ${GRID.map((g) => `lr ${g}`).join(" | ")} |`,
    `| --- | ${GRID.map(() => "---:").join(" | ")} |`,
  ];
  for (const opt of OPTS) {
    const best = bestLr(results, opt);
    const cells = GRID.map((lr) => {
      const r = results.find((x) =>
        x.phase === "tune" && x.settings.optimizer === opt &&
        x.settings.lr === lr && x.settings.epochs === TUNE_EPOCHS
      );
      if (!r) return "";
      const s = pct(r.test_accuracy);
      return lr === best ? `**${s}**` : s;
    });
    rows.push(`| ${OPTIMIZER_NAMES[opt]} | ${cells.join(" | ")} |`);
  }
  return rows.join("\n");
}

function finalTable(results: RunRecord[]): string {
  const rows = [
    "| optimizer | lr | test accuracy (mean ± spread) | per seed | state bytes | B/param | samples/s |",
    "| --- | ---: | ---: | --- | ---: | ---: | ---: |",
  ];
  const groups: [string, RunRecord[]][] = OPTS.map((opt) => [
    OPTIMIZER_NAMES[opt],
    results.filter((r) =>
      r.phase === "final" && r.settings.optimizer === opt &&
      r.settings.epochs === EPOCHS
    ),
  ]);
  const variant = results.filter((r) =>
    r.phase === "variant" && r.settings.epochs === EPOCHS
  );
  if (variant.length) {
    const { optimizer: _o, lr: _l, epochs: _e, seed: _s, ...rest } =
      variant[0].settings;
    groups.push([
      `MicroAdam, ${
        Object.entries(rest).map(([k, x]) => `${k} ${x}`).join(", ")
      }`,
      variant,
    ]);
  }
  for (const [name, runs] of groups) {
    if (!runs.length) continue;
    const acc = runs.map((r) => r.test_accuracy);
    const m = mean(acc);
    const spread = (Math.max(...acc) - Math.min(...acc)) / 2;
    rows.push(
      `| ${name} | ${runs[0].settings.lr} | ${pct(m)} ± ${pct(spread)} | ${
        acc.map(pct).join(", ")
      } | ${runs[0].state_bytes.toLocaleString("en-US")} | ${
        (runs[0].state_bytes / runs[0].params).toFixed(3)
      } | ${mean(runs.map((r) => r.samples_per_s)).toFixed(0)} |`,
    );
  }
  return rows.join("\n");
}

function ablationTable(results: RunRecord[]): string {
  const rows = [
    "| run | test accuracy | state bytes | B/param |",
    "| --- | ---: | ---: | ---: |",
  ];
  for (const r of results.filter((x) => x.phase === "ablate")) {
    const s = { ...r.settings };
    delete s.seed;
    rows.push(
      `| ${Object.entries(s).map(([k, x]) => `${k} ${x}`).join(", ")} | ${
        pct(r.test_accuracy)
      } | ${r.state_bytes.toLocaleString("en-US")} | ${
        (r.state_bytes / r.params).toFixed(3)
      } |`,
    );
  }
  return rows.join("\n");
}

async function timePhase(results: RunRecord[]): Promise<void> {
  const steps = Number(v["time-steps"]);
  console.log(
    `\nStep time on ${adapterName} (GPU timestamps, median of ${steps} steps after 10 warm-up steps; batch ${BASE.batch_size}):\n`,
  );
  console.log(
    "| optimizer | forward+backward ms | optimizer step ms | optimizer share |",
  );
  console.log("| --- | ---: | ---: | ---: |");
  for (const opt of OPTS) {
    const config: TrainConfig = {
      ...BASE,
      optimizer: opt,
      lr: bestLr(results, opt) ?? 1e-3,
      epochs: 1,
    };
    const trainer = new Trainer(device, config, data);
    await trainer.timeSteps(10);
    const t = await trainer.timeSteps(steps);
    trainer.dispose();
    console.log(
      `| ${OPTIMIZER_NAMES[opt]} | ${t.modelMs.toFixed(3)} | ${
        t.optimizerMs.toFixed(3)
      } | ${
        (100 * t.optimizerMs / (t.modelMs + t.optimizerMs)).toFixed(1)
      } % |`,
    );
  }
}

async function main(): Promise<void> {
  ensureRuntimeDir();
  await Deno.mkdir(OUT, { recursive: true });
  data = await loadData(BASE);
  device = await requestDevice();
  device.addEventListener("uncapturederror", (e) => {
    console.error("GPU error:", (e as GPUUncapturedErrorEvent).error.message);
    Deno.exit(1);
  });
  const info = (await navigator.gpu.requestAdapter())?.info;
  adapterName = info?.description || info?.device || "unknown adapter";
  console.log(
    `data: ${data.source}, ${data.train.count} train / ${data.test.count} test; device: ${adapterName}; results: ${RESULTS}`,
  );
  const results = await readResults();

  if (PHASES.includes("tune")) {
    console.log(
      `\n== tune: ${OPTS.join(", ")} × lr ${
        GRID.join(", ")
      }, seed 1, ${TUNE_EPOCHS} epochs`,
    );
    for (const opt of OPTS) {
      for (const lr of GRID) {
        await run(
          "tune",
          { optimizer: opt, lr, epochs: TUNE_EPOCHS, seed: 1 },
          results,
        );
      }
    }
    console.log(`\n${tuneTable(results)}`);
  }
  if (PHASES.includes("final")) {
    console.log(`\n== final: seeds ${SEEDS.join(", ")}, ${EPOCHS} epochs`);
    for (const seed of SEEDS) {
      for (const opt of OPTS) {
        const lr = bestLr(results, opt);
        if (lr === undefined) {
          throw new RangeError(
            `no lr for ${opt}: run --phase tune first or pass --lr-${opt}`,
          );
        }
        await run(
          "final",
          { optimizer: opt, lr, epochs: EPOCHS, seed },
          results,
        );
      }
    }
    console.log(`\n${finalTable(results)}`);
  }
  if (PHASES.includes("variant")) {
    const lrM = bestLr(results, "microadam");
    if (lrM === undefined) {
      throw new RangeError("variant needs MicroAdam's tuned lr");
    }
    console.log(
      `\n== variant: MicroAdam ${v.variant} at lr ${lrM}, seeds ${
        SEEDS.join(", ")
      }, ${EPOCHS} epochs`,
    );
    for (const seed of SEEDS) {
      await run(
        "variant",
        { optimizer: "microadam", lr: lrM, epochs: EPOCHS, seed, ...VARIANT },
        results,
      );
    }
    console.log(`\n${finalTable(results)}`);
  }
  if (PHASES.includes("ablate")) {
    const lrM = bestLr(results, "microadam");
    const lrA = bestLr(results, "adamw");
    if (lrM === undefined || lrA === undefined) {
      throw new RangeError("ablate needs the tuned lrs of microadam and adamw");
    }
    const base = {
      optimizer: "microadam" as const,
      lr: lrM,
      epochs: EPOCHS,
      seed: 1,
    };
    console.log(
      `\n== ablate: MicroAdam at lr ${lrM}, ${EPOCHS} epochs, seed 1`,
    );
    for (
      const s of [
        { dtype: "bf16" as const },
        { density: 0.02 },
        { window: 20 },
        { density: 0.05 },
        { window: 5 },
        { window: 3 },
        { density: 0.005 },
        { window: 2 },
        { window: 1 },
      ]
    ) {
      await run("ablate", { ...base, ...s }, results);
    }
    // The gap over longer training: both at twice the epochs.
    const longer = 2 * EPOCHS;
    await run("ablate", { ...base, epochs: longer }, results);
    await run(
      "ablate",
      { optimizer: "adamw", lr: lrA, epochs: longer, seed: 1 },
      results,
    );
    for (
      const s of [
        { window: 5, density: 0.02 }, // the default's state bytes, spent differently
        // More entries per coordinate make MicroAdam's steps larger (about
        // √entries), so the denser variants also at a lower lr.
        { density: 0.02, lr: 0.002 },
        { window: 20, lr: 0.002 },
        { density: 0.05, lr: 0.001 },
      ]
    ) {
      await run("ablate", { ...base, ...s }, results);
    }
    console.log(`\n${ablationTable(results)}`);
  }
  if (PHASES.includes("time") || v["measure-optimizer"]) {
    await timePhase(results);
  }
  device.destroy();
}

if (import.meta.main) await main();
