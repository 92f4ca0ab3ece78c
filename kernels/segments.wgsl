// Maps a workgroup to its segment; needs the kernel's `table` binding.

// The segment holding tile (or block) `w`: the last with prefix <= w.
fn find_segment(w: u32, by_tile: bool) -> u32 {
  var lo = 0u;
  var hi = table.num_segs - 1u;
  loop {
    if (lo >= hi) { break; }
    let mid = (lo + hi + 1u) / 2u;
    let first = select(table.segs[mid].first_block, table.segs[mid].first_tile, by_tile);
    if (first <= w) { lo = mid; } else { hi = mid - 1u; }
  }
  return lo;
}
