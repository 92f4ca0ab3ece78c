/**
 * A resumed training run equals an uninterrupted one bit for bit: the
 * parameters, the optimizer state, the data order and every logged loss,
 * whether it stopped mid-epoch (between log points) or was saved at an
 * epoch's last step before its evaluation. End to end, train.ts saves a
 * checkpoint on Ctrl-C (SIGINT) and `--resume` finishes the run with the
 * same final checkpoint and metrics as a run never interrupted.
 */

import assert from "node:assert/strict";
import { readTensor } from "../mod.ts";
import { readCheckpointFile } from "../src/checkpoint/file.ts";
import { defaultConfig, type TrainConfig } from "../src/train/config.ts";
import { loadData } from "../src/train/data.ts";
import type { EpochRecord, LogRecord } from "../src/train/trainer.ts";
import { Trainer } from "../src/train/trainer.ts";
import { testDevice } from "./gpu_util.ts";

const device = await testDevice();

const base: TrainConfig = {
  ...defaultConfig(),
  data: "synthetic",
  train_subset: 300, // 10 steps of 32 per epoch, the last one partial (12)
  test_subset: 100,
  eval_batch_size: 64,
  batch_size: 32,
  epochs: 2,
  hidden: [16],
  log_every: 4,
  warmup_steps: 3,
  progress: false,
};
const data = await loadData(base);

/** The records' deterministic fields (wall-clock ones dropped). */
function stable(records: (LogRecord | EpochRecord)[]): unknown[] {
  return records.map((r) => {
    const { samples_per_s: _s, train_seconds: _t, ...rest } =
      r as unknown as Record<string, unknown>;
    return rest;
  });
}

async function snapshot(t: Trainer) {
  return {
    params: await Promise.all(
      t.model.parameters().map((p) => readTensor(device, p.tensor)),
    ),
    state: await t.optimizer.stateDict(),
  };
}

function hooks(records: (LogRecord | EpochRecord)[]) {
  return {
    onLog: (r: LogRecord) => void records.push(r),
    onEpoch: (r: EpochRecord) => void records.push(r),
  };
}

for (
  const settings of [
    { optimizer: "microadam" as const },
    {
      optimizer: "microadam" as const,
      dtype: "bf16" as const,
      activation: "gelu" as const,
    },
    { optimizer: "adamw" as const, schedule: "constant" as const },
  ]
) {
  const config = { ...base, ...settings };
  const label = Object.values(settings).join(", ");
  Deno.test(`resume (${label}): stopped mid-epoch or saved before an epoch's evaluation, the run ends bit-identical to an uninterrupted one`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      // Uninterrupted; it also saves at step 10, the first epoch's last step,
      // before that epoch is evaluated.
      const recordsA: (LogRecord | EpochRecord)[] = [];
      const a = new Trainer(device, config, data);
      const resultA = await a.train({
        ...hooks(recordsA),
        afterStep: async (s) => {
          if (s === 10) await a.save(`${dir}/epoch_end.ckpt`);
        },
      });
      assert.equal(resultA.steps, 20);
      assert.equal(resultA.epochs.length, 2);
      const endA = await snapshot(a);
      a.dispose();

      // Stopped after step 7 (between log points 4 and 8), saved, resumed.
      const recordsB: (LogRecord | EpochRecord)[] = [];
      const b1 = new Trainer(device, config, data);
      const stopped = await b1.train({
        ...hooks(recordsB),
        shouldStop: () => b1.step >= 7,
      });
      assert.ok(stopped.interrupted);
      assert.equal(stopped.steps, 7);
      await b1.save(`${dir}/mid.ckpt`, { note: "mid" });
      b1.dispose();
      const b2 = new Trainer(device, config, data);
      assert.deepEqual(await b2.restore(`${dir}/mid.ckpt`), { note: "mid" });
      assert.equal(b2.step, 7);
      const resultB = await b2.train(hooks(recordsB));
      assert.deepEqual(await snapshot(b2), endA);
      assert.deepEqual(stable(recordsB), stable(recordsA));
      assert.equal(resultB.testAccuracy, resultA.testAccuracy);
      assert.equal(resultB.samples, resultA.samples);
      b2.dispose();

      // Resumed from the epoch's last step: evaluates epoch 1 first.
      const recordsC: (LogRecord | EpochRecord)[] = [];
      const c = new Trainer(device, config, data);
      await c.restore(`${dir}/epoch_end.ckpt`);
      await c.train(hooks(recordsC));
      assert.deepEqual(await snapshot(c), endA);
      const fromEpochEnd = stable(recordsA).slice(
        recordsA.findIndex((r) => r.kind === "epoch"),
      );
      assert.deepEqual(stable(recordsC), fromEpochEnd);
      c.dispose();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("resume refuses a checkpoint made with other training settings, naming them", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const a = new Trainer(device, base, data);
    await a.train({ shouldStop: () => a.step >= 2 });
    await a.save(`${dir}/a.ckpt`);
    a.dispose();
    const b = new Trainer(
      device,
      { ...base, lr: 0.5, seed: 9, log_every: 3 },
      data,
    );
    await assert.rejects(
      () => b.restore(`${dir}/a.ckpt`),
      /a\.ckpt: the run was saved with other settings: lr 0\.001 \(now 0\.5\), seed 1 \(now 9\); resume with the same settings/,
    );
    b.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function lines(path: string): Promise<Record<string, unknown>[]> {
  const text = await Deno.readTextFile(path).catch(() => "");
  return text.split("\n").filter((l) => l).map((l) => JSON.parse(l));
}

Deno.test("train.ts: Ctrl-C saves a checkpoint and exits 130; --resume finishes with the same checkpoint and metrics as an uninterrupted run", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const script = new URL("../train.ts", import.meta.url).pathname;
    const args = (tag: string) => [
      "run",
      "-A",
      script,
      "--data",
      "synthetic",
      "--train-subset",
      "6000",
      "--test-subset",
      "200",
      "--epochs",
      "2",
      "--batch-size",
      "32",
      "--hidden",
      "32",
      "--log-every",
      "5",
      "--optimizer",
      "adamw",
      "--no-progress",
      "--checkpoint",
      `${dir}/${tag}.ckpt`,
      "--metrics",
      `${dir}/${tag}.jsonl`,
    ];
    const decoder = new TextDecoder();

    // Interrupted once its metrics show it is training.
    const child = new Deno.Command(Deno.execPath(), {
      args: args("run"),
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    for (
      let i = 0;
      i < 600 && (await lines(`${dir}/run.jsonl`)).length < 2;
      i++
    ) {
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill("SIGINT");
    const out1 = await child.output();
    const text1 = decoder.decode(out1.stdout);
    assert.equal(out1.code, 130, text1 + decoder.decode(out1.stderr));
    assert.match(
      text1,
      /interrupted at step \d+ of 376; continue with --resume/,
    );
    const stoppedAt = (await readCheckpointFile(`${dir}/run.ckpt`)).state.calls;
    assert.ok(stoppedAt > 0 && stoppedAt < 376, `${stoppedAt}`);

    const resumed = await new Deno.Command(Deno.execPath(), {
      args: [...args("run"), "--resume", `${dir}/run.ckpt`],
    }).output();
    const text2 = decoder.decode(resumed.stdout);
    assert.equal(resumed.code, 0, text2 + decoder.decode(resumed.stderr));
    assert.match(
      text2,
      new RegExp(`resumed from .*run\\.ckpt at step ${stoppedAt}`),
    );
    assert.match(text2, /done: 376 steps/);

    const whole = await new Deno.Command(Deno.execPath(), {
      args: args("whole"),
    }).output();
    assert.equal(whole.code, 0, decoder.decode(whole.stderr));

    const r = await readCheckpointFile(`${dir}/run.ckpt`);
    const w = await readCheckpointFile(`${dir}/whole.ckpt`);
    assert.deepEqual(r.params, w.params);
    assert.deepEqual(r.state, w.state);
    const drop = (l: Record<string, unknown>) => {
      const { samples_per_s: _s, train_seconds: _t, ...rest } = l;
      return rest;
    };
    assert.deepEqual(
      (await lines(`${dir}/run.jsonl`)).map(drop),
      (await lines(`${dir}/whole.jsonl`)).map(drop),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a diverged run (infinite or NaN losses) still checkpoints and resumes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // Steps of ~1e30 overflow the logits in f32. No weight decay: AdamW
    // refuses lr·weightDecay ≥ 1 (it would flip the parameters' signs).
    const config = {
      ...base,
      optimizer: "adamw" as const,
      lr: 1e30,
      weight_decay: 0,
      epochs: 1,
    };
    const a = new Trainer(device, config, data);
    const records: LogRecord[] = [];
    await a.train({
      onLog: (r) => void records.push(r),
      shouldStop: () => a.step >= 8,
    });
    assert.ok(
      records.some((r) => !Number.isFinite(r.loss)),
      JSON.stringify(records),
    );
    await a.save(`${dir}/nan.ckpt`);
    a.dispose();
    const b = new Trainer(device, config, data);
    await b.restore(`${dir}/nan.ckpt`);
    const result = await b.train();
    assert.equal(result.steps, 10);
    assert.ok(!Number.isFinite(result.epochs[0].train_loss));
    b.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
