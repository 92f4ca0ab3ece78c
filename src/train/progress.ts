/**
 * The training progress bar (`npm:cli-progress`): steps, epoch, the latest
 * loss and accuracy, throughput and the time left. On a terminal it redraws
 * in place; elsewhere (CI logs, a file) its no-TTY mode prints plain lines
 * instead of control characters: one at `start`, one every 10 seconds (a
 * timer; `update` only stores the figures) and the last at `stop`.
 *
 * @module
 */

// @ts-types="@types/cli-progress"
import cliProgress from "cli-progress";
import process from "node:process";
import { describe, InvalidOptionError } from "../errors.ts";

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
  /** Where to draw; a stream whose `isTTY` is not true gets plain lines. @default {process.stderr} */
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

  /**
   * Sets the bar up; nothing is drawn before {@link ProgressBar.start}.
   *
   * @param options Total steps, epochs, label and output.
   * @throws {InvalidOptionError} `total` or `epochs` is not an integer >= 1,
   * or `notTtyEverySeconds` not a finite number > 0.
   */
  constructor(options: ProgressOptions) {
    for (const key of ["total", "epochs"] as const) {
      const v = options[key];
      if (!(Number.isSafeInteger(v) && v >= 1)) {
        throw new InvalidOptionError(
          `${key}: expected an integer >= 1, got ${describe(v)}`,
        );
      }
    }
    const every = options.notTtyEverySeconds ?? 10;
    if (!(Number.isFinite(every) && every > 0)) {
      throw new InvalidOptionError(
        `notTtyEverySeconds: expected a finite number > 0, got ${
          describe(every)
        }`,
      );
    }
    this.#total = options.total;
    const label = options.label ?? "train";
    const stream = options.stream ?? process.stderr;
    const tty = (stream as { isTTY?: boolean }).isTTY === true;
    this.#bar = new cliProgress.SingleBar({
      format:
        `${label} {bar} {percentage}% | step {value}/{total} | epoch {epoch}/${options.epochs} | loss {loss} | acc {acc} | {rate} samples/s | ETA {eta_formatted}`,
      barsize: 24,
      hideCursor: false,
      noTTYOutput: true,
      notTTYSchedule: every * 1000,
      // Off a terminal the last line already ends in a newline; the library
      // would add an empty line at stop, and clearing there is a no-op.
      clearOnComplete: !tty,
      stream,
      etaBuffer: 50,
    }, cliProgress.Presets.shades_classic);
  }

  /** Starts at step `value` (a resumed run's step), drawing the first line. */
  start(value: number): void {
    this.#bar.start(this.#total, value, {
      epoch: "-",
      loss: "-",
      acc: "-",
      rate: "-",
    });
  }

  /**
   * Moves to step `value` with the latest figures: loss to 4 decimals,
   * accuracy as a percentage to 1 decimal, samples per second rounded.
   */
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
