//! The `plan` check: planning arbitrary points, then splitting arbitrary
//! requests, every point stays carried by exactly one request.
//!
//! Input: `max_registers` and `max_gap` (u16 each), a point count (one byte,
//! modulo 64), the points, then a split count and the split indexes.

use spindle_protocols::modbus::plan_reads;

use crate::bytes::Bytes;

pub(crate) fn check(data: &[u8]) {
    let mut bytes = Bytes(data);
    let max_registers = bytes.u16();
    let max_gap = bytes.u16();
    let count = usize::from(bytes.u8() % 64);
    let points: Vec<_> = (0..count).map(|_| bytes.point()).collect();
    let mut plan = plan_reads(&points, max_registers, max_gap);
    for _ in 0..bytes.u8() {
        let index = usize::from(bytes.u8()) % plan.len().max(1);
        plan.split(index);
    }
    let mut carried = vec![0_u32; points.len()];
    for request in plan.requests() {
        for &index in &request.points {
            carried[index] += 1;
        }
    }
    assert!(carried.iter().all(|c| *c == 1), "carried {carried:?}");
}
