/**
 * src/train/tuned.ts against the comparison it comes from
 * (`bench/training/results.jsonl`): each tuned optimizer's rate is the best
 * test accuracy of its `tune` runs, all on the stated grid, 3 epochs and
 * seed 1; Adam, never tuned, takes AdamW's; the `final` runs used these
 * rates; the default config holds MicroAdam's.
 */

import assert from "node:assert/strict";
import { parse as parseYaml } from "yaml";
import { OPTIMIZERS } from "../src/train/config.ts";
import { TUNED_LR } from "../src/train/tuned.ts";

interface Result {
  phase: string;
  settings: { optimizer: string; lr: number; epochs: number; seed: number };
  test_accuracy: number;
}

const results: Result[] = (await Deno.readTextFile(
  new URL("../bench/training/results.jsonl", import.meta.url),
)).split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));

const tune = results.filter((r) => r.phase === "tune");
const GRID = [1e-4, 3e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2, 3e-2];

Deno.test("tuned: a rate for every optimizer, each on the grid", () => {
  assert.deepEqual(Object.keys(TUNED_LR).sort(), [...OPTIMIZERS].sort());
  for (const [opt, lr] of Object.entries(TUNED_LR)) {
    assert.ok(GRID.includes(lr), `${opt}: ${lr} is not on the grid`);
  }
});

Deno.test("tuned: each tuned optimizer's rate is its best tune run in bench/training/results.jsonl", () => {
  const tuned = [...new Set(tune.map((r) => r.settings.optimizer))].sort();
  assert.deepEqual(tuned, ["adamw", "amsgrad", "microadam"]);
  for (const opt of tuned) {
    const runs = tune.filter((r) => r.settings.optimizer === opt);
    // The whole grid, once each, with the settings the module states.
    assert.deepEqual(
      runs.map((r) => r.settings.lr).sort((a, b) => a - b),
      GRID,
      opt,
    );
    for (const r of runs) {
      assert.deepEqual(
        Object.keys(r.settings).sort(),
        ["epochs", "lr", "optimizer", "seed"],
      );
      assert.equal(r.settings.epochs, 3);
      assert.equal(r.settings.seed, 1);
    }
    const best = runs.reduce((a, b) =>
      b.test_accuracy > a.test_accuracy ? b : a
    );
    // A unique best, so the choice is not a tie broken by file order.
    assert.equal(
      runs.filter((r) => r.test_accuracy === best.test_accuracy).length,
      1,
    );
    assert.equal(
      TUNED_LR[opt as keyof typeof TUNED_LR],
      best.settings.lr,
      `${opt}: best tune accuracy ${best.test_accuracy} at lr ${best.settings.lr}`,
    );
  }
});

Deno.test("tuned: Adam (not tuned) takes AdamW's rate; the final runs used the tuned rates", () => {
  assert.equal(tune.some((r) => r.settings.optimizer === "adam"), false);
  assert.equal(TUNED_LR.adam, TUNED_LR.adamw);
  const final = results.filter((r) => r.phase === "final");
  assert.ok(final.length >= 3);
  for (const r of final) {
    const opt = r.settings.optimizer as keyof typeof TUNED_LR;
    assert.equal(
      r.settings.lr,
      TUNED_LR[opt],
      `final ${opt} seed ${r.settings.seed}`,
    );
  }
});

Deno.test("tuned: configs/fashion_mnist.yaml holds MicroAdam's tuned rate", async () => {
  const config = parseYaml(
    await Deno.readTextFile(
      new URL("../configs/fashion_mnist.yaml", import.meta.url),
    ),
  );
  assert.equal(config.optimizer, "microadam");
  assert.equal(config.lr, TUNED_LR.microadam);
});
