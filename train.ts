/**
 * Trains an MLP on Fashion-MNIST with MicroAdam, AdamW, AMSGrad or Adam on
 * WebGPU:
 *
 *   deno task train [--config FILE.yaml] [--resume CHECKPOINT] [--KEY VALUE ...]
 *
 * Settings come from `configs/fashion_mnist.yaml` (or `--config`), then the
 * flags; `--help` lists them. A progress bar shows the loss and the
 * throughput; `--metrics FILE` writes JSON lines; `--checkpoint FILE` saves
 * the model and the optimizer state in one atomic file every
 * `--checkpoint-every` steps, at the end and on Ctrl-C, and `--resume FILE`
 * continues such a run bit for bit. The summary gives the test accuracy,
 * the wall time, the throughput and the optimizer's state bytes.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { DatasetError, GpuUnavailableError, requestDevice } from "./mod.ts";
import { CONFIG_KEYS, helpText, type TrainConfig } from "./src/train/config.ts";
import { parseCommandLine } from "./src/train/cli.ts";
import { loadData } from "./src/train/data.ts";
import { MetricsWriter } from "./src/train/metrics.ts";
import { OPTIMIZER_NAMES } from "./src/train/optimizer.ts";
import { ProgressBar } from "./src/train/progress.ts";
import { ensureRuntimeDir } from "./src/train/runtime_dir.ts";
import { Trainer } from "./src/train/trainer.ts";
import { readCheckpointFile } from "./src/checkpoint/file.ts";

const DEFAULT_CONFIG = fileURLToPath(
  new URL("./configs/fashion_mnist.yaml", import.meta.url),
);

const fmt = (n: number) => n.toLocaleString("en-US");

/** The saved configuration of a checkpoint, with the keys given now applied over it. */
async function resumedConfig(
  path: string,
  config: TrainConfig,
  given: Set<string>,
): Promise<TrainConfig> {
  const { meta } = await readCheckpointFile(path);
  const saved = (meta?.config ?? {}) as Partial<TrainConfig>;
  const out = { ...config } as Record<string, unknown>;
  for (const k of CONFIG_KEYS) {
    if (!given.has(k) && k in saved) out[k] = saved[k];
  }
  return out as unknown as TrainConfig;
}

async function main(): Promise<number> {
  ensureRuntimeDir();
  const cli = await parseCommandLine(Deno.args, {
    defaultFile: DEFAULT_CONFIG,
  });
  if (cli.help) {
    console.log(
      helpText(
        "deno task train",
        cli.config,
        cli.configFile ?? "configs/fashion_mnist.yaml",
      ),
    );
    return 0;
  }
  let config = cli.config;
  if (cli.resume) config = await resumedConfig(cli.resume, config, cli.given);

  const data = await loadData(config);
  const device = await requestDevice();
  let gpuError: string | undefined;
  device.addEventListener("uncapturederror", (e) => {
    gpuError ??= (e as GPUUncapturedErrorEvent).error.message;
  });
  const trainer = new Trainer(device, config, data);
  const name = OPTIMIZER_NAMES[config.optimizer];
  const sizes = [784, ...config.hidden, data.train.classes].join("-");
  console.log(
    `${name} on ${data.source}: MLP ${sizes} (${
      fmt(trainer.paramCount)
    } parameters), ${config.epochs} epochs of ${
      fmt(trainer.stepsPerEpoch)
    } steps, batch ${config.batch_size}, lr ${config.lr} ${config.schedule}${
      config.warmup_steps ? ` (warm-up ${config.warmup_steps})` : ""
    }${
      config.optimizer === "microadam"
        ? `, window ${config.window}, density ${config.density}, ${config.dtype}`
        : ""
    }, seed ${config.seed}`,
  );

  let metricsBytes: number | undefined;
  if (cli.resume) {
    const extra = await trainer.restore(cli.resume);
    if (extra.metrics === config.metrics) {
      metricsBytes = extra.metricsBytes as number | undefined;
    }
    console.log(`resumed from ${cli.resume} at step ${fmt(trainer.step)}`);
  }
  const metrics = config.metrics
    ? await MetricsWriter.open(config.metrics, metricsBytes)
    : undefined;
  const save = async (path: string) =>
    await trainer.save(path, {
      metrics: config.metrics,
      metricsBytes: await metrics?.size(),
    });

  let stop = false;
  const onSigint = () => {
    if (stop) Deno.exit(130); // a second Ctrl-C: leave at once
    stop = true;
  };
  Deno.addSignalListener("SIGINT", onSigint);

  const bar = config.progress
    ? new ProgressBar({
      total: trainer.totalSteps,
      epochs: config.epochs,
      label: name,
    })
    : undefined;
  bar?.start(trainer.step);
  const started = performance.now();
  const result = await trainer.train({
    async onLog(r) {
      await metrics?.write({
        ...r,
        optimizer: config.optimizer,
        seed: config.seed,
      });
      bar?.update(r.step, {
        epoch: r.epoch,
        loss: r.loss,
        accuracy: r.accuracy,
        samplesPerSecond: r.samples_per_s,
      });
    },
    async onEpoch(r) {
      await metrics?.write({
        ...r,
        optimizer: config.optimizer,
        seed: config.seed,
      });
      if (!bar) {
        console.log(
          `epoch ${r.epoch}: train loss ${r.train_loss.toFixed(4)}, test loss ${
            r.test_loss.toFixed(4)
          }, test accuracy ${(100 * r.test_accuracy).toFixed(2)} %`,
        );
      }
    },
    async afterStep(step) {
      const every = config.checkpoint_every;
      if (config.checkpoint && every > 0 && step % every === 0) {
        await save(config.checkpoint);
      }
    },
    shouldStop: () => stop,
  });
  bar?.stop();
  if (gpuError) throw new GpuUnavailableError(`GPU error: ${gpuError}`);
  if (config.checkpoint) await save(config.checkpoint);
  metrics?.close();
  Deno.removeSignalListener("SIGINT", onSigint);
  const wall = (performance.now() - started) / 1000;

  if (bar) {
    for (const r of result.epochs) {
      console.log(
        `epoch ${r.epoch}: train loss ${r.train_loss.toFixed(4)}, test loss ${
          r.test_loss.toFixed(4)
        }, test accuracy ${(100 * r.test_accuracy).toFixed(2)} %`,
      );
    }
  }
  const bpp = result.stateBytes / result.paramCount;
  console.log(
    [
      result.interrupted
        ? `interrupted at step ${fmt(result.steps)} of ${
          fmt(trainer.totalSteps)
        }${
          config.checkpoint
            ? `; continue with --resume ${config.checkpoint}`
            : " (no --checkpoint given: nothing saved)"
        }`
        : `done: ${fmt(result.steps)} steps`,
      `test accuracy ${(100 * result.testAccuracy).toFixed(2)} % (test loss ${
        result.testLoss.toFixed(4)
      })`,
      `wall time ${wall.toFixed(1)} s (training ${
        result.trainSeconds.toFixed(1)
      } s), ${fmt(Math.round(result.samplesPerSecond))} samples/s`,
      `optimizer state ${fmt(result.stateBytes)} bytes (${
        bpp.toFixed(3)
      } B/param)`,
      ...(config.checkpoint ? [`checkpoint: ${config.checkpoint}`] : []),
      ...(config.metrics ? [`metrics: ${config.metrics}`] : []),
    ].join("\n"),
  );
  trainer.dispose();
  device.destroy();
  return result.interrupted ? 130 : 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (e) {
    if (
      e instanceof DatasetError || e instanceof GpuUnavailableError ||
      e instanceof RangeError || (e as Error).name === "CheckpointError"
    ) {
      console.error(`train: ${(e as Error).message}`);
      Deno.exit(1);
    }
    throw e;
  }
}
