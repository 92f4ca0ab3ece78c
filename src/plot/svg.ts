/**
 * Plots as standalone SVG, for notebooks (an `image/svg+xml` output), READMEs
 * and reports: Observable Plot renders into a server-side DOM (linkedom).
 *
 * Plot wraps a chart in an HTML `<figure>` when it has a legend, title,
 * subtitle or caption, and draws continuous legends on a canvas; neither is a
 * picture once saved headless. So a chart here is one `<svg>`: label series
 * with marks (e.g. `Plot.text` at the line ends) and put titles in the
 * surrounding text.
 *
 * @module
 */

import * as Plot from "@observablehq/plot";
import { parseHTML } from "linkedom";
import { InvalidOptionError } from "../errors.ts";

/** The little of a DOM element this module touches (Deno has no DOM types). */
interface SvgNode {
  tagName: string;
  outerHTML: string;
  setAttribute(name: string, value: string): void;
}

const { document } = parseHTML(
  "<!doctype html><html><body></body></html>",
) as unknown as { document: unknown };

/**
 * Renders `options` with Observable Plot and returns the chart as one
 * standalone SVG document string (with its XML namespace, white background).
 *
 * @throws {InvalidOptionError} If the options make Plot return an HTML
 * figure (a legend, title, subtitle or caption) instead of one SVG.
 *
 * @example
 * ```ts
 * import * as Plot from "@observablehq/plot";
 * import { plotSvg } from "./svg.ts";
 * const svg = plotSvg({
 *   marks: [Plot.lineY([1, 4, 2, 3])],
 *   width: 320,
 *   height: 160,
 * });
 * console.log(svg.startsWith("<svg"), svg.includes('xmlns="http://www.w3.org/2000/svg"')); // true true
 * ```
 */
export function plotSvg(options: Plot.PlotOptions): string {
  const node = Plot.plot({
    ...options,
    document: document as Plot.PlotOptions["document"],
  }) as unknown as SvgNode;
  if (node.tagName.toLowerCase() !== "svg") {
    throw new InvalidOptionError(
      `plotSvg: expected Plot to return one <svg>, got a <${node.tagName.toLowerCase()}> (a legend, title, subtitle or caption makes an HTML figure); label series with marks such as Plot.text and put titles in the text around the plot`,
    );
  }
  node.setAttribute("xmlns", "http://www.w3.org/2000/svg");
  node.setAttribute("style", "background: white; color: black");
  return node.outerHTML;
}
