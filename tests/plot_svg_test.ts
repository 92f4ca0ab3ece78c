import assert from "node:assert/strict";
import * as Plot from "@observablehq/plot";
import { InvalidOptionError } from "../src/errors.ts";
import { plotSvg } from "../src/plot/svg.ts";

Deno.test("plotSvg: one standalone SVG with the marks' data drawn", () => {
  const data = [{ x: 0, y: 0 }, { x: 1, y: 2 }, { x: 2, y: 1 }];
  const svg = plotSvg({
    width: 300,
    height: 200,
    marks: [Plot.dot(data, { x: "x", y: "y" }), Plot.text(["label"])],
  });
  assert.match(svg, /^<svg[^>]* xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.match(svg, /width="300"/);
  assert.equal(svg.match(/<circle/g)?.length, 3, "one circle per datum");
  assert.ok(svg.includes(">label<"));
  assert.ok(svg.endsWith("</svg>"));
});

Deno.test("plotSvg: a legend or title (an HTML figure) is an InvalidOptionError", () => {
  for (
    const extra of [{ color: { legend: true } }, { title: "A title" }]
  ) {
    assert.throws(
      () =>
        plotSvg({
          ...extra,
          marks: [Plot.lineY([1, 2, 3], { stroke: () => "a" })],
        }),
      (e: unknown) =>
        e instanceof InvalidOptionError && /got a <figure>/.test(e.message),
    );
  }
});
