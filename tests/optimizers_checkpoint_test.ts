/**
 * The optimizer matrix (tests/optimizers.ts), checkpoints (resume bit for bit,
 * corruption, mismatches, missing files) and disposal.
 */

import assert from "node:assert/strict";
import { CheckpointError, cosineDecay, type OptimizerState } from "../mod.ts";
import {
  all,
  type AnyOptions,
  assertBitsEqual,
  assertStatesEqual,
  expectError,
  expectReject,
  type Family,
  type Handle,
  isMicro,
  make,
  matrix,
  randomData,
  run,
  type Spec,
  tensorsOf,
  variant,
  withTempDir,
} from "./optimizers.ts";

// Checkpoints.

matrix(
  "checkpoint: 20 steps, save, load into a fresh optimizer, 10 more equals 30 straight (bit-for-bit)",
  all,
  (s) =>
    withTempDir(async (dir) => {
      const data = randomData(9, [5, 1000, 4097]);
      const o = { lr: s.lr, schedule: cosineDecay(30, { warmupSteps: 3 }) };
      const straight = make(s, tensorsOf(data), o);
      const first = make(s, tensorsOf(data), o);
      let resumed: Handle | undefined;
      try {
        run(straight, 9, 30);
        run(first, 9, 20);
        await first.save(`${dir}/opt.ckpt`);
        const mid = await first.params();
        resumed = make(s, tensorsOf(mid), o);
        await resumed.load(`${dir}/opt.ckpt`);
        assertStatesEqual(
          await resumed.stateDict(),
          await first.stateDict(),
          "loaded",
        );
        run(resumed, 9, 10, 20);
        assertBitsEqual(
          await resumed.params(),
          await straight.params(),
          "params after 20 + 10",
        );
        assertStatesEqual(
          await resumed.stateDict(),
          await straight.stateDict(),
          "state after 20 + 10",
        );
        assert.equal(resumed.opt.stateBytes(), straight.opt.stateBytes());
        assert.deepEqual(await resumed.status(), await straight.status());
      } finally {
        straight.close();
        first.close();
        resumed?.close();
      }
    }),
);

matrix(
  "checkpoint: a flipped byte anywhere (header, data, trailer) or a truncation is a CheckpointError and changes nothing",
  all,
  (s) =>
    withTempDir(async (dir) => {
      const data = randomData(10, [3, 700]);
      const source = make(s, tensorsOf(data), { lr: s.lr });
      const target = make(s, tensorsOf(data), { lr: s.lr });
      try {
        run(source, 10, 5);
        run(target, 11, 3);
        await source.save(`${dir}/good.ckpt`);
        const bytes = await Deno.readFile(`${dir}/good.ckpt`);
        const headerLength = new DataView(bytes.buffer).getUint32(12, true);
        const dataStart = Math.ceil((16 + headerLength) / 8) * 8;
        const positions: [string, number][] = [
          ["magic", 0],
          ["version", 8],
          ["header length", 12],
          ["header JSON start", 16],
          ["header JSON middle", 16 + (headerLength >> 1)],
          ["header JSON end", 16 + headerLength - 1],
          ["first data byte", dataStart],
          ["middle data byte", (dataStart + bytes.length - 4) >> 1],
          ["last data byte", bytes.length - 5],
          ["trailer CRC", bytes.length - 1],
        ];
        const before = await target.stateDict();
        const params = await target.params();
        const cases: [string, Uint8Array][] = positions.map(([label, at]) => {
          const bad = bytes.slice();
          bad[at] ^= 0xff;
          return [`${label} (byte ${at})`, bad];
        });
        cases.push(["truncated by 9 bytes", bytes.slice(0, bytes.length - 9)]);
        for (const [label, bad] of cases) {
          await Deno.writeFile(`${dir}/bad.ckpt`, bad);
          await expectReject(
            () => target.load(`${dir}/bad.ckpt`),
            CheckpointError,
            new RegExp(`bad\\.ckpt`),
          ).catch((e) => {
            throw new Error(`${label}: ${(e as Error).message}`);
          });
        }
        assertStatesEqual(await target.stateDict(), before, "target state");
        assertBitsEqual(await target.params(), params, "target params");
        // ... and the good file still loads.
        await target.load(`${dir}/good.ckpt`);
        assertStatesEqual(
          await target.stateDict(),
          await source.stateDict(),
          "good load",
        );
      } finally {
        source.close();
        target.close();
      }
    }),
);

interface Mismatch {
  label: string;
  source: Spec;
  options?: AnyOptions;
  lengths?: number[];
  expect: RegExp;
}

const LENGTHS = [3, 700];

function mismatches(s: Spec): Mismatch[] {
  const len: Mismatch[] = [{
    label: "a tensor of another length",
    source: s,
    lengths: [3, 701],
    expect: /tensor 1 "t1" has 700 elements, the state's tensor "t1" has 701/,
  }, {
    label: "another tensor count",
    source: s,
    lengths: [3],
    expect:
      /tensor count mismatch: this optimizer has 2 tensors, the state has 1/,
  }];
  const other = (family: Family) => ({
    label: `a ${family} checkpoint`,
    source: variant(s, family),
    expect: new RegExp(
      `optimizer mismatch: this is ${s.family}, the state was saved by ${family}$`,
    ),
  });
  // Both compressed optimizers record their density and EF block size.
  const compression = [{
    label: "density 0.02 into 0.01",
    source: s,
    options: { density: 0.02 },
    expect:
      /config mismatch on "density": this optimizer has 0\.01, the state has 0\.02/,
  }, {
    label: "efBlockSize 64 into 4096",
    source: s,
    options: { efBlockSize: 64 },
    expect:
      /config mismatch on "efBlockSize": this optimizer has 4096, the state has 64/,
  }];
  switch (s.family) {
    case "MicroAdam":
      return [
        ...len,
        {
          label: "window 5 into window 10",
          source: s,
          options: { window: 5 },
          expect:
            /config mismatch on "window": this optimizer has 10, the state has 5/,
        },
        {
          label: `${s.dtype === "f32" ? "bf16" : "f32"} into ${s.dtype}`,
          source: variant(s, "MicroAdam", s.dtype === "f32" ? "bf16" : "f32"),
          expect: new RegExp(
            `config mismatch on "dtype": this optimizer has "${s.dtype}", the state has "${
              s.dtype === "f32" ? "bf16" : "f32"
            }"`,
          ),
        },
        ...compression,
        other("Adam"),
      ];
    case "Adam":
      return [
        ...len,
        other("AdamW"),
        other("AMSGrad"),
        {
          label: "Adam with amsgrad into Adam",
          source: s,
          options: { amsgrad: true },
          expect:
            /config mismatch on "amsgrad": this optimizer has false, the state has true/,
        },
        other("MicroAdam"),
      ];
    case "AdamW":
      return [...len, other("Adam"), other("MicroAdam")];
    case "AMSGrad":
      return [
        ...len,
        {
          label: "Adam with amsgrad: true (same state, another kind)",
          source: variant(s, "Adam"),
          options: { amsgrad: true },
          expect:
            /optimizer mismatch: this is AMSGrad, the state was saved by Adam$/,
        },
        other("AdamW"),
      ];
    case "MicroAdamTheory":
      return [
        ...len,
        other("MicroAdam"),
        ...compression,
      ];
  }
}

matrix(
  "checkpoint: another optimizer kind or config is a CheckpointError naming the difference, and changes nothing",
  all,
  (s) =>
    withTempDir(async (dir) => {
      const target = make(s, tensorsOf(randomData(12, LENGTHS)), {
        lr: s.lr,
      });
      try {
        run(target, 12, 3);
        const before = await target.stateDict();
        for (const m of mismatches(s)) {
          const lengths = m.lengths ?? LENGTHS;
          const src = make(m.source, tensorsOf(randomData(13, lengths)), {
            lr: m.source.lr,
            ...m.options,
          });
          try {
            run(src, 13, 2);
            const path = `${dir}/${m.label.replace(/\W+/g, "_")}.ckpt`;
            await src.save(path);
            await expectReject(
              () => target.load(path),
              CheckpointError,
              m.expect,
            )
              .catch((e) => {
                throw new Error(`${m.label}: ${(e as Error).message}`);
              });
            // Same through loadStateDict.
            const st = await src.stateDict();
            expectError(
              () => target.loadStateDict(st),
              CheckpointError,
              m.expect,
            );
          } finally {
            src.close();
          }
        }
        assertStatesEqual(await target.stateDict(), before, "target state");
      } finally {
        target.close();
      }
    }),
);

matrix(
  "checkpoint: loading a missing path is a CheckpointError naming it",
  all,
  (s) =>
    withTempDir(async (dir) => {
      const h = make(s, tensorsOf(randomData(14, [10])), { lr: s.lr });
      try {
        run(h, 14, 2);
        const before = await h.stateDict();
        await expectReject(
          () => h.load(`${dir}/missing.ckpt`),
          CheckpointError,
          /no checkpoint at .*missing\.ckpt/,
        );
        assertStatesEqual(await h.stateDict(), before, "state");
      } finally {
        h.close();
      }
    }),
);

/** A valid state of `s` after a few steps, for tampering. */
async function tamperable(s: Spec) {
  const h = make(s, tensorsOf(randomData(15, [3, 700])), { lr: s.lr });
  run(h, 15, 4);
  return { h, state: await h.stateDict() };
}

async function expectLoadRejected(
  h: Handle,
  state: OptimizerState,
  ...patterns: RegExp[]
): Promise<void> {
  const before = await h.stateDict();
  expectError(() => h.loadStateDict(state), CheckpointError, ...patterns);
  assertStatesEqual(await h.stateDict(), before, "state after the refusal");
}

matrix(
  "checkpoint: loadStateDict rejects calls < step + skipped",
  all,
  async (s) => {
    const { h, state } = await tamperable(s);
    try {
      await expectLoadRejected(h, { ...state, calls: state.step - 1 }, /calls/);
    } finally {
      h.close();
    }
  },
);

matrix(
  "checkpoint: loadStateDict rejects an unexpected state buffer",
  all,
  async (s) => {
    const { h, state } = await tamperable(s);
    try {
      const tensors = state.tensors.map((t, i) =>
        i === 1
          ? { ...t, buffers: { ...t.buffers, extra: new Uint8Array(4) } }
          : t
      );
      await expectLoadRejected(h, { ...state, tensors }, /"extra"/);
    } finally {
      h.close();
    }
  },
);

matrix(
  "checkpoint: loadStateDict rejects malformed tensor entries as CheckpointError",
  all,
  async (s) => {
    const { h, state } = await tamperable(s);
    try {
      for (
        const bad of [
          null,
          { name: "t1", length: 700 },
          { name: "t1", length: 700, buffers: null },
        ]
      ) {
        const tensors = [state.tensors[0], bad] as OptimizerState["tensors"];
        await expectLoadRejected(h, { ...state, tensors }, /tensor 1/);
      }
    } finally {
      h.close();
    }
  },
);

matrix(
  "checkpoint: loadStateDict rejects a ring position other than step mod window",
  isMicro,
  async (s) => {
    const { h, state } = await tamperable(s);
    try {
      await expectLoadRejected(h, { ...state, ring: state.ring + 1 }, /ring/);
    } finally {
      h.close();
    }
  },
);

matrix(
  "checkpoint: loadStateDict rejects window indices outside their block",
  isMicro,
  async (s) => {
    const { h, state } = await tamperable(s);
    try {
      // Tensor 0 has 3 elements: index 3 is outside its only block.
      const window = state.tensors[0].buffers.window.slice();
      new DataView(window.buffer).setUint16(0, 3, true);
      const tensors = state.tensors.map((t, i) =>
        i === 0 ? { ...t, buffers: { ...t.buffers, window } } : t
      );
      await expectLoadRejected(
        h,
        { ...state, tensors },
        /outside its block/,
      );
    } finally {
      h.close();
    }
  },
);

// ---------------------------------------------------------------------------
// Disposal.

matrix(
  "dispose: afterwards step(), status(), stateDict(), save() and loadStateDict() throw 'disposed'; dispose() twice is fine",
  all,
  (s) =>
    withTempDir(async (dir) => {
      const h = make(s, tensorsOf(randomData(16, [20])), { lr: s.lr });
      run(h, 16, 2);
      const state = await h.stateDict();
      const params = await h.params();
      h.opt.dispose();
      h.opt.dispose();
      const disposed = /disposed/;
      expectError(() => h.opt.step(), Error, disposed);
      await expectReject(() => h.status(), Error, disposed);
      await expectReject(() => h.stateDict(), Error, disposed);
      await expectReject(() => h.save(`${dir}/x.ckpt`), Error, disposed);
      expectError(() => h.loadStateDict(state), Error, disposed);
      // The caller's tensors are the caller's: still there, unchanged.
      assertBitsEqual(await h.params(), params, "params after dispose");
      h.close();
    }),
);

matrix("dispose: `using` disposes at the end of the block", all, (s) => {
  const h = make(s, tensorsOf(randomData(17, [20])), { lr: s.lr });
  try {
    {
      using opt = h.opt;
      opt.step();
    }
    expectError(() => h.opt.step(), Error, /disposed/);
  } finally {
    h.close();
  }
});

// ---------------------------------------------------------------------------
