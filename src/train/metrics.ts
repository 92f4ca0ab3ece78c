/**
 * Metrics as JSON lines: one object per line, appended and written through
 * at once, so a crash loses nothing already reported and `tail -f` works.
 *
 * @module
 */

import { describe, InvalidOptionError } from "../errors.ts";

/**
 * Appends JSON lines to a file: each record is `JSON.stringify` (its keys in
 * insertion order; a non-finite number, which JSON cannot hold, becomes
 * `null`) and a newline, in the file before {@link MetricsWriter.write}
 * resolves: nothing waits in a buffer of the process.
 */
export class MetricsWriter {
  /** The file's path. */
  readonly path: string;
  readonly #file: Deno.FsFile;
  readonly #encoder = new TextEncoder();

  private constructor(path: string, file: Deno.FsFile) {
    this.path = path;
    this.#file = file;
  }

  /**
   * Opens `path` for appending (creating it). With `truncateTo`, the file is
   * first cut to that many bytes: a resumed run drops the lines written
   * after its checkpoint (a file already shorter stays as it is).
   *
   * @param path The file; its folder must exist.
   * @param truncateTo A byte count from {@link MetricsWriter.size}.
   * @throws {InvalidOptionError} `truncateTo` is not an integer >= 0.
   *
   * @example
   * ```ts
   * import { MetricsWriter } from "./metrics.ts";
   * const dir = await Deno.makeTempDir();
   * const m = await MetricsWriter.open(`${dir}/m.jsonl`);
   * await m.write({ step: 1, loss: 0.5 });
   * m.close();
   * console.log(await Deno.readTextFile(`${dir}/m.jsonl`)); // {"step":1,"loss":0.5}\n
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  static async open(path: string, truncateTo?: number): Promise<MetricsWriter> {
    if (
      truncateTo !== undefined &&
      !(Number.isSafeInteger(truncateTo) && truncateTo >= 0)
    ) {
      throw new InvalidOptionError(
        `truncateTo: expected a byte count (an integer >= 0), got ${
          describe(truncateTo)
        }`,
      );
    }
    const file = await Deno.open(path, {
      create: true,
      write: true,
      read: true,
    });
    if (truncateTo !== undefined) {
      const size = (await file.stat()).size;
      if (size > truncateTo) await file.truncate(truncateTo);
    }
    await file.seek(0, Deno.SeekMode.End);
    return new MetricsWriter(path, file);
  }

  /**
   * Appends one record as a line.
   *
   * @param record The fields, written in their insertion order.
   */
  async write(record: Record<string, unknown>): Promise<void> {
    const bytes = this.#encoder.encode(JSON.stringify(record) + "\n");
    for (let n = 0; n < bytes.length;) {
      n += await this.#file.write(bytes.subarray(n));
    }
  }

  /** The file's current size in bytes (what `open`'s `truncateTo` takes). */
  async size(): Promise<number> {
    return (await this.#file.stat()).size;
  }

  /** Closes the file. */
  close(): void {
    this.#file.close();
  }
}
