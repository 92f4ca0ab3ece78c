/**
 * How a notebook (or `deno run`) reports: verdict tables computed from the
 * data, plain tables, and display helpers that emit Jupyter outputs in a
 * kernel (`image/svg+xml`, `text/markdown`) and text elsewhere. Also the
 * scale switch `MICROADAM_NB_SCALE`.
 *
 * @module
 */

/** One row of a verdict table. */
export interface Verdict {
  /** What the paper or the spec claims. */
  claim: string;
  /** What this run measured (numbers). */
  measured: string;
  /** Whether the measurement supports the claim, decided by code. */
  holds: boolean;
}

/** The header line that marks a verdict table (notebooks/summary.ts looks for it). */
export const VERDICT_HEADER = "| claim | measured | holds? |";

function cellText(s: string): string {
  return s.replaceAll("|", "\\|").replaceAll("\n", " ");
}

/**
 * A markdown table `claim | measured | holds?` ("yes" / "**no**").
 *
 * @example
 * ```ts
 * import { verdictTable } from "./report.ts";
 * console.log(verdictTable([{ claim: "slope ≤ −½", measured: "−0.52", holds: true }]).split("\n")[2]);
 * // | slope ≤ −½ | −0.52 | yes |
 * ```
 */
export function verdictTable(rows: Verdict[]): string {
  return [
    VERDICT_HEADER,
    "| --- | --- | --- |",
    ...rows.map((r) =>
      `| ${cellText(r.claim)} | ${cellText(r.measured)} | ${
        r.holds ? "yes" : "**no**"
      } |`
    ),
  ].join("\n");
}

/**
 * A markdown table of objects (columns in the order of the first row's keys).
 *
 * @example
 * ```ts
 * import { markdownTable } from "./report.ts";
 * console.log(markdownTable([{ a: 1, b: "x" }]));
 * // | a | b |
 * // | --- | --- |
 * // | 1 | x |
 * ```
 */
export function markdownTable(rows: Record<string, unknown>[]): string {
  if (rows.length === 0) return "";
  const keys = Object.keys(rows[0]);
  return [
    `| ${keys.join(" | ")} |`,
    `| ${keys.map(() => "---").join(" | ")} |`,
    ...rows.map((r) =>
      `| ${keys.map((k) => cellText(String(r[k]))).join(" | ")} |`
    ),
  ].join("\n");
}

/**
 * A number with `digits` significant digits, in exponent form outside
 * [1e-3, 1e5).
 *
 * @example
 * ```ts
 * import { num } from "./report.ts";
 * console.log(num(0.000123456), num(12.3456), num(-0.5)); // 1.23e-4 12.3 -0.500
 * ```
 */
export function num(x: number, digits = 3): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) {
    return x.toExponential(digits - 1).replace("e+", "e");
  }
  return x.toPrecision(digits);
}

interface JupyterLike {
  display(bundle: Record<string, string>, o: { raw: boolean }): Promise<void>;
}

function jupyter(): JupyterLike | undefined {
  // Outside `deno jupyter` the getter throws rather than returning undefined.
  try {
    return (Deno as unknown as { jupyter?: JupyterLike }).jupyter;
  } catch {
    return undefined;
  }
}

/**
 * Shows markdown: a `text/markdown` output in a kernel, the text itself on
 * stdout elsewhere. Await it: a kernel's display message that is still
 * pending when the cell ends can be lost.
 */
export async function showMarkdown(md: string): Promise<void> {
  const j = jupyter();
  if (j) {
    await j.display({ "text/markdown": md, "text/plain": md }, { raw: true });
    await settle();
  } else console.log(md);
}

/**
 * A short pause after a display: Deno's kernel (2.9) can publish a message
 * after the cell's idle status under load, and nbclient then drops it.
 */
function settle(): Promise<void> {
  return new Promise((r) => setTimeout(r, 20));
}

/**
 * Shows an SVG chart: an `image/svg+xml` output in a kernel (await it);
 * elsewhere, when
 * `MICROADAM_PLOT_DIR` is set, writes it there as `<name>.svg`, else prints
 * one line saying where it would go.
 */
export async function showSvg(svg: string, name = "plot"): Promise<void> {
  const j = jupyter();
  if (j) {
    await j.display({ "image/svg+xml": svg }, { raw: true });
    await settle();
    return;
  }
  const dir = Deno.env.get("MICROADAM_PLOT_DIR");
  if (dir) {
    Deno.mkdirSync(dir, { recursive: true });
    Deno.writeTextFileSync(`${dir}/${name}.svg`, svg);
    console.log(`[plot written to ${dir}/${name}.svg]`);
  } else {
    console.log(`[plot "${name}": set MICROADAM_PLOT_DIR to save it]`);
  }
}

/** Shows a verdict table (markdown). */
export function showVerdicts(rows: Verdict[]): Promise<void> {
  return showMarkdown(verdictTable(rows));
}

/**
 * The size of a notebook's run: `"ci"` (default: a few minutes on 2 cores)
 * or `"full"`, from `MICROADAM_NB_SCALE`.
 *
 * @example
 * ```ts
 * import { notebookScale } from "./report.ts";
 * console.log(["ci", "full"].includes(notebookScale())); // true
 * ```
 */
export function notebookScale(): "ci" | "full" {
  const s = Deno.env.get("MICROADAM_NB_SCALE") ?? "ci";
  if (s !== "ci" && s !== "full") {
    throw new RangeError(
      `MICROADAM_NB_SCALE: expected "ci" or "full", got ${JSON.stringify(s)}`,
    );
  }
  return s;
}
