/**
 * The training progress bar (`npm:cli-progress`): steps, epoch, the latest
 * loss and accuracy, throughput and the time left. On a terminal it redraws
 * in place; elsewhere (CI logs, a file) its no-TTY mode prints one plain
 * line every 10 seconds instead of control characters.
 *
 * @module
 */

// @ts-types="@types/cli-progress"
import cliProgress from "cli-progress";
import process from "node:process";

/** What the bar shows besides the step count. */
export interface ProgressFields {
  /** Current epoch (1-based). */
  epoch: number;
  /** Latest training loss. */
  loss: number;
  /** Latest training accuracy in [0, 1]. */
  accuracy: number;
  /** Latest throughput. */
  samplesPerSecond: number;
}

/** Options of {@link ProgressBar}. */
export interface ProgressOptions {
  /** Total steps. */
  total: number;
  /** Epochs, shown as `epoch e/E`. */
  epochs: number;
  /** A label in front, e.g. the optimizer. @default {"train"} */
  label?: string;
  /** Seconds between lines when the output is not a terminal. @default {10} */
  notTtyEverySeconds?: number;
  /** Where to draw. @default {process.stderr} */
  stream?: NodeJS.WritableStream;
}

/**
 * A progress bar over training steps.
 *
 * @example
 * ```ts
 * import { ProgressBar } from "./progress.ts";
 * const bar = new ProgressBar({ total: 10, epochs: 1, label: "demo" });
 * bar.start(0);
 * bar.update(10, { epoch: 1, loss: 0.5, accuracy: 0.8, samplesPerSecond: 1000 });
 * bar.stop();
 * ```
 */
export class ProgressBar {
  readonly #bar: cliProgress.SingleBar;
  readonly #total: number;

  /** @param options Total steps, epochs, label and output. */
  constructor(options: ProgressOptions) {
    this.#total = options.total;
    const label = options.label ?? "train";
    this.#bar = new cliProgress.SingleBar({
      format:
        `${label} {bar} {percentage}% | step {value}/{total} | epoch {epoch}/${options.epochs} | loss {loss} | acc {acc} | {rate} samples/s | ETA {eta_formatted}`,
      barsize: 24,
      hideCursor: false,
      noTTYOutput: true,
      notTTYSchedule: (options.notTtyEverySeconds ?? 10) * 1000,
      stream: options.stream ?? process.stderr,
      etaBuffer: 50,
    }, cliProgress.Presets.shades_classic);
  }

  /** Starts at step `value`. */
  start(value: number): void {
    this.#bar.start(this.#total, value, {
      epoch: "-",
      loss: "-",
      acc: "-",
      rate: "-",
    });
  }

  /** Moves to step `value` with the latest figures. */
  update(value: number, f: ProgressFields): void {
    this.#bar.update(value, {
      epoch: f.epoch,
      loss: f.loss.toFixed(4),
      acc: `${(100 * f.accuracy).toFixed(1)}%`,
      rate: Math.round(f.samplesPerSecond),
    });
  }

  /** Draws the last state and stops (call before printing anything else). */
  stop(): void {
    this.#bar.stop();
  }
}
