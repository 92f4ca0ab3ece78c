/**
 * Draws the training curves of the comparison from its metrics (JSON lines
 * written by `bench/train_compare.ts`): the training loss and the test
 * accuracy by epoch, one line per optimizer, the mean over seeds with the
 * seeds' range as a band. Written with `plotSvg` (src/plot/svg.ts) as two
 * standalone SVG files.
 *
 *   deno run -A bench/plot_training.ts [--in bench/training]
 *     [--phase final,variant] [--out docs/training]
 *
 * MicroAdam's lines are named with their window (`m`): the `variant`
 * phase's window is a line of its own.
 *
 * writes `<out>_loss.svg` and `<out>_accuracy.svg`.
 *
 * @module
 */

import * as Plot from "@observablehq/plot";
import { parseArgs } from "node:util";
import { join } from "node:path";
import { plotSvg } from "../src/plot/svg.ts";
import { OPTIMIZER_NAMES } from "../src/train/optimizer.ts";
import type { OptimizerName } from "../src/train/config.ts";

interface Line {
  kind: "train" | "epoch";
  step: number;
  epoch: number;
  optimizer: OptimizerName;
  seed: number;
  /** MicroAdam's window, where the run set one. */
  window?: number;
  loss?: number;
  test_accuracy?: number;
  train_loss?: number;
}

interface Point {
  optimizer: string;
  x: number;
  mean: number;
  lo: number;
  hi: number;
}

const { values: v } = parseArgs({
  args: Deno.args,
  options: {
    in: { type: "string", default: "bench/training" },
    phase: { type: "string", default: "final,variant" },
    out: { type: "string", default: "docs/training" },
  },
  strict: true,
});

const dir = join(v.in!, "metrics");
const phases = v.phase!.split(",");
const lines: Line[] = [];
for await (const e of Deno.readDir(dir)) {
  if (
    !phases.some((p) => e.name.startsWith(`${p}_`)) ||
    !e.name.endsWith(".jsonl")
  ) continue;
  const text = await Deno.readTextFile(join(dir, e.name));
  for (const l of text.split("\n")) if (l.trim()) lines.push(JSON.parse(l));
}
if (!lines.length) {
  throw new Error(
    `no ${v.phase}_*.jsonl metrics in ${dir}: run bench/train_compare.ts first`,
  );
}

/** Mean and range over seeds of `value` at each (optimizer, x). */
function aggregate(
  rows: Line[],
  x: (l: Line) => number,
  value: (l: Line) => number,
): Point[] {
  const groups = new Map<
    string,
    { optimizer: string; x: number; ys: number[] }
  >();
  for (const l of rows) {
    // MicroAdam's runs without a window setting used the comparison's base,
    // the paper's 10 (BASE in bench/train_compare.ts).
    const name = OPTIMIZER_NAMES[l.optimizer] +
      (l.optimizer === "microadam" ? ` m=${l.window ?? 10}` : "");
    const key = `${name}:${x(l)}`;
    const g = groups.get(key) ?? { optimizer: name, x: x(l), ys: [] };
    g.ys.push(value(l));
    groups.set(key, g);
  }
  return [...groups.values()].map((g) => ({
    optimizer: g.optimizer,
    x: g.x,
    mean: g.ys.reduce((s, y) => s + y, 0) / g.ys.length,
    lo: Math.min(...g.ys),
    hi: Math.max(...g.ys),
  })).sort((a, b) => a.optimizer.localeCompare(b.optimizer) || a.x - b.x);
}

// Steps per epoch, from the epoch records (step at the end of epoch 1).
const perEpoch = lines.find((l) => l.kind === "epoch" && l.epoch === 1)?.step ??
  1;
const loss = aggregate(
  lines.filter((l) => l.kind === "train"),
  (l) => l.step / perEpoch,
  (l) => l.loss!,
);
const accuracy = aggregate(
  lines.filter((l) => l.kind === "epoch"),
  (l) => l.epoch,
  (l) => 100 * l.test_accuracy!,
);
const seeds = new Set(lines.map((l) => l.seed)).size;

/**
 * One label per series at its last point, pushed apart vertically so that
 * close lines keep readable labels (a gap of 5 % of the y range, measured in
 * log space on a log axis).
 */
function endLabels(points: Point[], logY: boolean): Point[] {
  const t = (y: number) => logY ? Math.log(y) : y;
  const inv = (y: number) => logY ? Math.exp(y) : y;
  const ys = points.map((p) => t(p.mean));
  const gap = 0.05 * (Math.max(...ys) - Math.min(...ys));
  const last = new Map<string, Point>();
  for (const p of points) {
    const q = last.get(p.optimizer);
    if (!q || p.x > q.x) last.set(p.optimizer, p);
  }
  const labels = [...last.values()].map((p) => ({ ...p, at: t(p.mean) }))
    .sort((a, b) => a.at - b.at);
  for (let i = 1; i < labels.length; i++) {
    labels[i].at = Math.max(labels[i].at, labels[i - 1].at + gap);
  }
  return labels.map(({ at, ...p }) => ({ ...p, mean: inv(at) }));
}

function chart(points: Point[], y: string, logY: boolean): string {
  return plotSvg({
    width: 640,
    height: 340,
    marginRight: 115,
    x: { label: "epoch", grid: true },
    y: { label: y, grid: true, type: logY ? "log" : "linear" },
    color: { scheme: "tableau10" },
    marks: [
      Plot.areaY(points, {
        x: "x",
        y1: "lo",
        y2: "hi",
        fill: "optimizer",
        fillOpacity: 0.15,
      }),
      Plot.lineY(points, {
        x: "x",
        y: "mean",
        stroke: "optimizer",
        strokeWidth: 1.5,
      }),
      Plot.text(endLabels(points, logY), {
        x: "x",
        y: "mean",
        text: "optimizer",
        fill: "optimizer",
        textAnchor: "start",
        dx: 4,
      }),
    ],
  });
}

const out = v.out!;
await Deno.writeTextFile(
  `${out}_loss.svg`,
  chart(
    loss,
    `training loss (mean of ${seeds} seed${
      seeds === 1 ? "" : "s"
    }, every 100 steps)`,
    true,
  ) +
    "\n",
);
await Deno.writeTextFile(
  `${out}_accuracy.svg`,
  chart(
    accuracy,
    `test accuracy, % (mean of ${seeds} seed${
      seeds === 1 ? "" : "s"
    }; band: range)`,
    false,
  ) + "\n",
);
console.log(
  `wrote ${out}_loss.svg and ${out}_accuracy.svg from ${lines.length} metric lines`,
);
