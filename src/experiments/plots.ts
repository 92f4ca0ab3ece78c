/**
 * The experiments' charts, as standalone SVG strings (`src/plot/svg.ts`):
 * phase diagrams (a grid of cells coloured and labelled by value), line
 * charts with confidence bands on linear or log axes (series labelled at
 * their ends, as Plot's legends are not SVG), and trajectories over a
 * contour plot. Titles belong in the text around a chart.
 *
 * @module
 */

import * as Plot from "@observablehq/plot";
import { plotSvg } from "../plot/svg.ts";

/** One cell of a phase diagram. */
export interface Cell {
  /** Column (category). */
  x: string;
  /** Row (category). */
  y: string;
  /** Value shown by colour and text. */
  value: number;
  /** Panel, for several diagrams side by side. */
  panel?: string;
  /** Text in the cell. @default {value with 2 decimals} */
  label?: string;
}

/** Options of {@link phaseDiagram}. */
export interface PhaseDiagramOptions {
  /** Axis label of the columns. */
  xLabel: string;
  /** Axis label of the rows. */
  yLabel: string;
  /** Colour domain [low, high]. */
  domain: [number, number];
  /** A d3 colour scheme name. @default {"RdBu"} (reversed: low blue, high red) */
  scheme?: Plot.ColorScheme;
  /** Reverse the scheme. @default {true} */
  reverse?: boolean;
  /** Column order. @default {order of first appearance} */
  xDomain?: string[];
  /** Row order. @default {order of first appearance} */
  yDomain?: string[];
  /** Width in px. @default {200 per panel + 80} */
  width?: number;
  /** Height in px. @default {40 per row + 90} */
  height?: number;
}

/**
 * A phase diagram: one coloured, labelled cell per (x, y), one panel per
 * distinct `panel`.
 *
 * @example
 * ```ts
 * import { phaseDiagram } from "./plots.ts";
 * const svg = phaseDiagram(
 *   [{ x: "a", y: "1", value: -1 }, { x: "b", y: "1", value: 1 }],
 *   { xLabel: "x", yLabel: "y", domain: [-1, 1] },
 * );
 * console.log(svg.startsWith("<svg"), svg.includes(">-1.00<")); // true true
 * ```
 */
export function phaseDiagram(cells: Cell[], o: PhaseDiagramOptions): string {
  const panels = [...new Set(cells.map((c) => c.panel ?? ""))];
  const rows = o.yDomain ?? [...new Set(cells.map((c) => c.y))];
  const columns = o.xDomain ?? [...new Set(cells.map((c) => c.x))];
  const data = cells.map((c) => ({
    ...c,
    panel: c.panel ?? "",
    label: c.label ?? c.value.toFixed(2),
  }));
  const facet = panels.length > 1 ? { fx: "panel" } : {};
  const [lo, hi] = o.domain;
  const isDark = (v: number) => Math.abs((v - lo) / (hi - lo) - 0.5) > 0.3;
  return plotSvg({
    width: o.width ?? 200 * panels.length + 80,
    height: o.height ?? 40 * rows.length + 90,
    marginLeft: 70,
    marginBottom: 45,
    x: { type: "band", label: o.xLabel, domain: columns, tickRotate: -30 },
    y: { type: "band", label: o.yLabel, domain: rows },
    fx: panels.length > 1 ? { label: null, domain: panels } : undefined,
    color: {
      type: "linear",
      scheme: o.scheme ?? "RdBu",
      reverse: o.reverse ?? true,
      domain: o.domain,
      clamp: true,
    },
    marks: [
      Plot.cell(data, { x: "x", y: "y", fill: "value", inset: 0.5, ...facet }),
      // Dark cells (far from the middle of the domain) get white text.
      ...[true, false].map((dark) =>
        Plot.text(data.filter((c) => isDark(c.value) === dark), {
          x: "x",
          y: "y",
          text: "label",
          fontSize: 11,
          fill: dark ? "white" : "black",
          ...facet,
        })
      ),
    ],
  });
}

/** A point of a series, with an optional band [lo, hi]. */
export interface SeriesPoint {
  /** x. */
  x: number;
  /** y. */
  y: number;
  /** Lower end of the band. */
  lo?: number;
  /** Upper end of the band. */
  hi?: number;
}

/** A named series of a line chart. */
export interface Series {
  /** Label written at the line's end. */
  name: string;
  /** Points, in x order. */
  points: SeriesPoint[];
  /** Dashed line (e.g. a fitted or reference line). @default {false} */
  dashed?: boolean;
  /** Draw dots at the points. @default {false} */
  dots?: boolean;
}

/** Options of {@link lineChart}. */
export interface LineChartOptions {
  /** x-axis label. */
  xLabel: string;
  /** y-axis label. */
  yLabel: string;
  /** Log x axis. @default {false} */
  xLog?: boolean;
  /** Log y axis. @default {false} */
  yLog?: boolean;
  /** Horizontal reference lines (value, label). */
  rules?: { y: number; label: string }[];
  /** Width in px. @default {640} */
  width?: number;
  /** Height in px. @default {360} */
  height?: number;
  /** y-axis domain. @default {from the data} */
  yDomain?: [number, number];
}

/**
 * A line chart: each series as a line (with a translucent band where points
 * carry lo/hi) and its name at its last point.
 *
 * @example
 * ```ts
 * import { lineChart } from "./plots.ts";
 * const svg = lineChart(
 *   [{ name: "a", points: [{ x: 1, y: 1, lo: 0.5, hi: 2 }, { x: 10, y: 0.1, lo: 0.05, hi: 0.2 }] }],
 *   { xLabel: "T", yLabel: "loss", xLog: true, yLog: true },
 * );
 * console.log(svg.includes(">a<"), svg.includes("<path")); // true true
 * ```
 */
export function lineChart(series: Series[], o: LineChartOptions): string {
  const rows = series.flatMap((s) =>
    s.points.map((p) => ({ ...p, name: s.name }))
  );
  const ends = series.filter((s) => s.points.length > 0).map((s) => ({
    ...s.points[s.points.length - 1],
    name: s.name,
  }));
  const banded = rows.filter((r) => r.lo !== undefined && r.hi !== undefined);
  const names = series.map((s) => s.name);
  const marks: Plot.Markish[] = [];
  if (banded.length) {
    marks.push(Plot.areaY(banded, {
      x: "x",
      y1: "lo",
      y2: "hi",
      fill: "name",
      fillOpacity: 0.15,
      z: "name",
    }));
  }
  for (const s of series) {
    const pts = s.points.map((p) => ({ ...p, name: s.name }));
    marks.push(Plot.line(pts, {
      x: "x",
      y: "y",
      stroke: "name",
      strokeWidth: 1.6,
      strokeDasharray: s.dashed ? "5,3" : undefined,
    }));
    if (s.dots) {
      marks.push(Plot.dot(pts, { x: "x", y: "y", fill: "name", r: 2.5 }));
    }
  }
  for (const r of o.rules ?? []) {
    marks.push(Plot.ruleY([r.y], { stroke: "#888", strokeDasharray: "2,3" }));
    marks.push(Plot.text([r], {
      y: "y",
      text: "label",
      frameAnchor: "left",
      dy: -6,
      dx: 4,
      fill: "#555",
      fontSize: 10,
    }));
  }
  marks.push(Plot.text(ends, {
    x: "x",
    y: "y",
    text: "name",
    fill: "name",
    textAnchor: "start",
    dx: 5,
    fontSize: 11,
  }));
  return plotSvg({
    width: o.width ?? 640,
    height: o.height ?? 360,
    marginRight: 110,
    marginLeft: 60,
    grid: true,
    x: { type: o.xLog ? "log" : "linear", label: o.xLabel },
    y: { type: o.yLog ? "log" : "linear", label: o.yLabel, domain: o.yDomain },
    color: { domain: names, scheme: "tableau10" },
    marks,
  });
}

/** Options of {@link contourTrajectories}. */
export interface ContourOptions {
  /** The function drawn as contours (log10 of it is coloured). */
  f: (x: number, y: number) => number;
  /** x range. */
  x: [number, number];
  /** y range. */
  y: [number, number];
  /** Trajectories: named lists of [x, y]. */
  paths: { name: string; points: [number, number][] }[];
  /** Marked points (e.g. start and optimum). */
  marks?: { x: number; y: number; label: string }[];
  /** Width in px. @default {640} */
  width?: number;
  /** Height in px. @default {480} */
  height?: number;
}

/**
 * Trajectories over filled contours of `log10(f + 1e-3)`, each path labelled
 * at its end.
 *
 * @example
 * ```ts
 * import { contourTrajectories } from "./plots.ts";
 * const svg = contourTrajectories({
 *   f: (x, y) => x * x + y * y, x: [-1, 1], y: [-1, 1],
 *   paths: [{ name: "gd", points: [[1, 1], [0.5, 0.5], [0, 0]] }],
 * });
 * console.log(svg.includes(">gd<")); // true
 * ```
 */
export function contourTrajectories(o: ContourOptions): string {
  // The colour scale belongs to the contours; paths take literal colours.
  const pathMarks = o.paths.flatMap((p, i) => {
    const stroke = PALETTE[i % PALETTE.length];
    const rows = p.points.map(([x, y]) => ({ x, y }));
    const end = rows.slice(-1).map((r) => ({ ...r, name: p.name }));
    return [
      Plot.line(rows, { x: "x", y: "y", stroke, strokeWidth: 1.5, clip: true }),
      Plot.dot(end, { x: "x", y: "y", fill: stroke, r: 3 }),
      Plot.text(end, {
        x: "x",
        y: "y",
        text: "name",
        fill: stroke,
        textAnchor: "start",
        dx: 6,
        dy: 12 * (i - (o.paths.length - 1) / 2),
        fontSize: 11,
      }),
    ];
  });
  return plotSvg({
    width: o.width ?? 640,
    height: o.height ?? 480,
    marginRight: 100,
    x: { label: "x", domain: o.x },
    y: { label: "y", domain: o.y },
    color: { type: "linear", scheme: "Greys", reverse: true },
    marks: [
      Plot.contour({
        fill: (x: number, y: number) => Math.log10(o.f(x, y) + 1e-3),
        x1: o.x[0],
        x2: o.x[1],
        y1: o.y[0],
        y2: o.y[1],
        thresholds: 15,
        stroke: "white",
        strokeOpacity: 0.5,
        fillOpacity: 0.35,
      }),
      ...pathMarks,
      Plot.dot(o.marks ?? [], { x: "x", y: "y", stroke: "black", r: 4 }),
      Plot.text(o.marks ?? [], {
        x: "x",
        y: "y",
        text: "label",
        dy: -10,
        fontSize: 11,
      }),
    ],
  });
}

/** Literal colours for marks that cannot use the colour scale (tableau10). */
const PALETTE = [
  "#4e79a7",
  "#f28e2c",
  "#e15759",
  "#76b7b2",
  "#59a14f",
  "#edc949",
  "#af7aa1",
  "#ff9da7",
  "#9c755f",
  "#bab0ab",
];
