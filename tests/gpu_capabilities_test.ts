/**
 * src/gpu/capabilities.ts: the fma probe decides between the hardware and
 * the integer path of kernels/numeric.wgsl; it must say "no" where fma() is
 * unfused (llvmpipe), and pipelines must get the switch it chose.
 */

import assert from "node:assert/strict";
import {
  hasExactFma,
  hasSubgroups,
  probeExactFma,
  probeSubgroups,
} from "../src/gpu/capabilities.ts";
import { requestDevice } from "../src/gpu/device.ts";
import { kernelSource, pipeline } from "../src/gpu/kernels.ts";

const opts = { sanitizeResources: false, sanitizeOps: false };

Deno.test({
  name: "probeExactFma: false on llvmpipe, whose fma() is unfused",
  ...opts,
  fn: async () => {
    const adapter = await navigator.gpu.requestAdapter();
    const device = await adapter!.requestDevice();
    try {
      assert.equal(
        hasExactFma(device),
        false,
        "unprobed devices use the integer path",
      );
      const exact = await probeExactFma(device);
      assert.equal(hasExactFma(device), exact);
      if (adapter!.info.description.includes("llvmpipe")) {
        assert.equal(exact, false);
      }
    } finally {
      device.destroy();
    }
  },
});

Deno.test({
  name:
    "requestDevice probes, and numeric kernels compile with EXACT_FMA both ways",
  ...opts,
  fn: async () => {
    const device = await requestDevice();
    try {
      assert.equal(typeof hasExactFma(device), "boolean");
      for (
        const name of [
          "prologue",
          "microadamSelect",
          "microadamUpdate",
          "microadamCommit",
        ] as const
      ) {
        assert.ok(kernelSource(name).includes("override EXACT_FMA"), name);
        for (const EXACT_FMA of [0, 1]) {
          device.pushErrorScope("validation");
          const p = pipeline(device, name, { EXACT_FMA });
          assert.ok(p);
          assert.equal(
            await device.popErrorScope(),
            null,
            `${name} EXACT_FMA=${EXACT_FMA}`,
          );
        }
        // Without an explicit value the probe's answer is used (same cached pipeline).
        assert.equal(
          pipeline(device, name),
          pipeline(device, name, { EXACT_FMA: hasExactFma(device) ? 1 : 0 }),
        );
      }
    } finally {
      device.destroy();
    }
  },
});

Deno.test({
  name:
    "probeSubgroups: false without the feature; requestDevice asks for it and llvmpipe's subgroups pass the probe",
  ...opts,
  fn: async () => {
    const adapter = await navigator.gpu.requestAdapter();
    const bare = await adapter!.requestDevice();
    const asked = await requestDevice();
    const declined = await requestDevice({ subgroups: false });
    try {
      assert.equal(await probeSubgroups(bare), false);
      assert.equal(hasSubgroups(bare), false);
      assert.equal(hasSubgroups(declined), false);
      assert.equal(declined.features.has("subgroups"), false);
      assert.equal(
        hasSubgroups(asked),
        asked.features.has("subgroups") && await probeSubgroups(asked),
      );
      if (adapter!.info.description.includes("llvmpipe")) {
        assert.equal(hasSubgroups(asked), true);
      }
    } finally {
      bare.destroy();
      asked.destroy();
      declined.destroy();
    }
  },
});
