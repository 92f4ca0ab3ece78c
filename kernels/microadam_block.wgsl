// The top-k block a workgroup works on, shared by the MicroAdam select
// kernels (general and one-pass) and the one-pass update kernel.

// Top-k block w of a batch (w < table.total_blocks): its segment and where it
// lies in it. Every thread may compute it: it depends on uniform values only
// (the read-only table, the workgroup id), so no barrier is needed.
struct TopkBlock {
  seg: u32,
  index: u32, // the block's number in its segment
  start: u32, // segment-local coordinate of its first element
  n: u32,     // elements in the block
  k: u32,     // entries to keep
  row: u32,   // word of `work` where its staged window row starts
}

fn topk_block(w: u32) -> TopkBlock {
  var b: TopkBlock;
  b.seg = find_segment(w, false);
  let s = table.segs[b.seg];
  b.index = w - s.first_block;
  b.start = b.index * s.block;
  b.n = min(s.block, s.len - b.start);
  b.k = select(s.k_tail, s.k_block, b.n == s.block);
  b.row = s.stage_off + b.index * s.k_block;
  return b;
}
