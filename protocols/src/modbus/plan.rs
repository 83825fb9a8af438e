//! Read planning: which requests read a device's points. Pure: no I/O.
//!
//! [`plan_reads`] merges the points of each area into [`ReadRequest`]s.
//! Invariants of every [`ReadPlan`], held by construction and by `split`:
//! * every point is carried by exactly one request, of the point's area, and
//!   lies wholly inside it;
//! * a request asks for at most `min(max_registers, 125)` registers, or 2000
//!   bits for coil/discrete ([`cap`]) — except a single point wider than
//!   that, which gets a request of its own width (configuration validation
//!   should reject such points; the device then answers with an exception);
//! * inside a request, no run of registers that belongs to none of its points
//!   is longer than `max_gap`;
//! * `ReadRequest::points` is sorted by address, then by end.
//!
//! Points may overlap (two bools from bits of one register, a u32 and its low
//! u16): they share registers, not requests.
//!
//! A device that answers "illegal data address" (exception 2) for a merged
//! read usually has a hole in its map. [`ReadPlan::split`] halves such a
//! request by points; the plan is the memory of those splits, so a poller
//! that keeps its plan sends the split requests directly from then on.

use std::collections::BTreeMap;

use spindle_config::model::{Area, Point};

/// One read request: `count` registers (or bits) of `area` from `start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    pub area: Area,
    pub start: u16,
    pub count: u16,
    /// Indices into the planned points, sorted by address.
    pub points: Vec<usize>,
}

impl ReadRequest {
    /// Offset of `address` in this request's answer, if it lies inside.
    pub fn offset_of(&self, address: u16) -> Option<usize> {
        let offset = address.checked_sub(self.start)?;
        (offset < self.count).then_some(usize::from(offset))
    }
}

/// The requests that read a device's points. Kept by the poller across polls.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadPlan {
    requests: Vec<ReadRequest>,
    /// Extent (start, exclusive end) of each planned point, by index.
    extents: Vec<(u32, u32)>,
    max_registers: u16,
    max_gap: u16,
}

impl ReadPlan {
    pub fn requests(&self) -> &[ReadRequest] {
        &self.requests
    }

    pub fn len(&self) -> usize {
        self.requests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Split request `index` by halving its points (by address). Returns
    /// `false`, changing nothing, when the request carries a single point (or
    /// does not exist). The requests of the two halves take its place from
    /// `index` on: two, or more where overlapping points had bridged a gap
    /// that the halves no longer bridge.
    pub fn split(&mut self, index: usize) -> bool {
        let Some(request) = self.requests.get(index) else {
            return false;
        };
        if request.points.len() < 2 {
            return false;
        }
        let area = request.area;
        let (first, second) = request.points.split_at(request.points.len() / 2);
        let mut halves = self.merge(area, first.to_vec());
        halves.extend(self.merge(area, second.to_vec()));
        self.requests.splice(index..=index, halves);
        true
    }

    /// Merge `points` (of `area`, sorted by extent) into requests, greedily:
    /// a point joins the request being built while the gap before it is at
    /// most `max_gap` and the request stays within the cap.
    fn merge(&self, area: Area, points: Vec<usize>) -> Vec<ReadRequest> {
        let cap = u32::from(cap(area, self.max_registers));
        let max_gap = u32::from(self.max_gap);
        let mut requests = Vec::new();
        // The request being built: start, exclusive end, points.
        let mut current: Option<(u32, u32, Vec<usize>)> = None;
        for index in points {
            let (start, end) = self.extents.get(index).copied().unwrap_or((0, 0));
            current = match current.take() {
                Some((first, last, mut carried))
                    if start.saturating_sub(last) <= max_gap && end.max(last) - first <= cap =>
                {
                    carried.push(index);
                    Some((first, end.max(last), carried))
                }
                other => {
                    requests.extend(other);
                    Some((start, end, vec![index]))
                }
            };
        }
        requests.extend(current);
        requests
            .into_iter()
            .map(|(start, end, points)| ReadRequest {
                area,
                start: u16::try_from(start).unwrap_or(u16::MAX),
                count: u16::try_from(end - start).unwrap_or(u16::MAX),
                points,
            })
            .collect()
    }
}

/// Most registers (bits) one request of `area` may ask for: `max_registers`
/// within the protocol's 125 for registers; for coil/discrete the protocol's
/// 2000 bits alone (`max_registers` counts registers, as the model says).
pub fn cap(area: Area, max_registers: u16) -> u16 {
    if area.is_bit() {
        area.protocol_max()
    } else {
        max_registers.clamp(1, area.protocol_max())
    }
}

/// Extent of a point: start and exclusive end, in u32 so that a point at the
/// top of the address space cannot overflow.
fn extent(point: &Point) -> (u32, u32) {
    let start = u32::from(point.address);
    (start, start + u32::from(point.width()))
}

/// Plan the reads of `points`: merged per area into requests of at most
/// [`cap`] registers (bits), spanning at most `max_gap` unused registers between
/// points. Requests come in area order (holding, input, coil, discrete),
/// then by address. A `max_registers` of 0 is taken as 1.
pub fn plan_reads(points: &[Point], max_registers: u16, max_gap: u16) -> ReadPlan {
    let mut plan = ReadPlan {
        requests: Vec::new(),
        extents: points.iter().map(extent).collect(),
        max_registers,
        max_gap,
    };
    let mut by_area: BTreeMap<Area, Vec<usize>> = BTreeMap::new();
    for (index, point) in points.iter().enumerate() {
        by_area.entry(point.area).or_default().push(index);
    }
    for (area, mut indices) in by_area {
        indices.sort_by_key(|index| plan.extents.get(*index).copied());
        let requests = plan.merge(area, indices);
        plan.requests.extend(requests);
    }
    plan
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU16;

    use proptest::prelude::*;
    use spindle_config::model::{ValueType, WordOrder};

    use super::*;
    use crate::modbus::decode::tests::point;

    fn at(area: Area, address: u16, value_type: ValueType) -> Point {
        let mut p = point(area, value_type, WordOrder::Abcd);
        p.address = address;
        p
    }

    #[test]
    fn neighbours_merge_and_far_points_do_not() {
        let points = [
            at(Area::Holding, 0, ValueType::U32),
            at(Area::Holding, 2, ValueType::U16),
            at(Area::Holding, 10, ValueType::U16), // gap of 7 after register 2
            at(Area::Holding, 30, ValueType::F32), // gap of 19
            at(Area::Input, 0, ValueType::U16),
        ];
        let plan = plan_reads(&points, 125, 8);
        let shape: Vec<_> = plan
            .requests()
            .iter()
            .map(|r| (r.area, r.start, r.count, r.points.clone()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (Area::Holding, 0, 11, vec![0, 1, 2]),
                (Area::Holding, 30, 2, vec![3]),
                (Area::Input, 0, 1, vec![4]),
            ]
        );
    }

    #[test]
    fn bits_of_one_register_share_a_request() {
        let mut a = at(Area::Holding, 5, ValueType::Bool);
        a.bit = Some(0);
        let mut b = a.clone();
        b.bit = Some(7);
        let plan = plan_reads(&[a, b], 125, 0);
        assert_eq!(plan.len(), 1);
        assert_eq!(plan.requests()[0].count, 1);
    }

    #[test]
    fn the_register_cap_cuts_requests() {
        let points: Vec<_> = (0..10)
            .map(|i| at(Area::Holding, i * 2, ValueType::F32))
            .collect();
        let plan = plan_reads(&points, 6, 8);
        assert_eq!(plan.len(), 4);
        assert!(plan.requests().iter().all(|r| r.count <= 6));
    }

    #[test]
    fn coils_are_capped_at_2000_bits() {
        let points: Vec<_> = (0..4000)
            .map(|i| at(Area::Coil, i, ValueType::Bool))
            .collect();
        let plan = plan_reads(&points, 125, 0);
        assert_eq!(plan.len(), 2);
        assert_eq!(plan.requests()[0].count, 2000);
    }

    #[test]
    fn split_halves_by_points_down_to_single_points() {
        let points: Vec<_> = (0..4)
            .map(|i| at(Area::Holding, i * 3, ValueType::U16))
            .collect();
        let mut plan = plan_reads(&points, 125, 8);
        assert_eq!(plan.len(), 1);
        assert!(plan.split(0));
        assert_eq!(
            plan.requests()
                .iter()
                .map(|r| (r.start, r.count, r.points.clone()))
                .collect::<Vec<_>>(),
            vec![(0, 4, vec![0, 1]), (6, 4, vec![2, 3])]
        );
        assert!(plan.split(1));
        assert_eq!(plan.len(), 3);
        assert_eq!(plan.requests()[2].start, 9);
        assert!(!plan.split(2), "a single-point request cannot split");
        assert!(!plan.split(7), "no such request");
    }

    #[test]
    fn splitting_away_a_wide_point_does_not_leave_a_wide_gap() {
        let mut wide = at(Area::Holding, 0, ValueType::String);
        wide.length = NonZeroU16::new(20);
        let points = [
            wide,
            at(Area::Holding, 5, ValueType::U16),
            at(Area::Holding, 25, ValueType::U16),
        ];
        let mut plan = plan_reads(&points, 125, 8);
        assert_eq!(plan.len(), 1);
        assert!(plan.split(0));
        // Halves [wide] and [5, 25]; 5 and 25 are 19 registers apart.
        assert_eq!(plan.len(), 3);
    }

    #[test]
    fn a_point_wider_than_the_cap_gets_its_own_request() {
        let mut wide = at(Area::Holding, 0, ValueType::String);
        wide.length = NonZeroU16::new(10);
        let plan = plan_reads(&[wide, at(Area::Holding, 10, ValueType::U16)], 4, 8);
        assert_eq!(plan.requests()[0].count, 10);
        assert_eq!(plan.requests()[1].points, vec![1]);
    }

    fn any_point() -> impl Strategy<Value = Point> {
        (
            prop_oneof![
                Just(Area::Holding),
                Just(Area::Input),
                Just(Area::Coil),
                Just(Area::Discrete)
            ],
            0_u16..300,
            prop_oneof![
                Just(ValueType::U16),
                Just(ValueType::U32),
                Just(ValueType::F64),
                Just(ValueType::Bool),
                Just(ValueType::String)
            ],
            1_u16..6,
        )
            .prop_map(|(area, address, value_type, length)| {
                let value_type = if area.is_bit() {
                    ValueType::Bool
                } else {
                    value_type
                };
                let mut p = at(area, address, value_type);
                p.length = NonZeroU16::new(length);
                p
            })
    }

    /// Every invariant of the module doc, checked on `plan`.
    fn check(plan: &ReadPlan, points: &[Point], max_registers: u16, max_gap: u16) {
        let mut carried = vec![0; points.len()];
        for request in plan.requests() {
            let cap = cap(request.area, max_registers);
            let widest = request.points.iter().map(|&i| points[i].width()).max();
            assert!(
                request.count <= cap.max(widest.unwrap_or(0)),
                "{request:?} over the cap"
            );
            if request.points.len() > 1 {
                assert!(request.count <= cap, "{request:?} over the cap");
            }
            let mut used = vec![false; usize::from(request.count)];
            for &index in &request.points {
                carried[index] += 1;
                let p = &points[index];
                assert_eq!(p.area, request.area);
                assert!(p.address >= request.start);
                let end = u32::from(p.address) + u32::from(p.width());
                assert!(end <= u32::from(request.start) + u32::from(request.count));
                for address in p.address..p.address + p.width() {
                    used[usize::from(address - request.start)] = true;
                }
            }
            assert!(used.first() == Some(&true) && used.last() == Some(&true));
            let longest_gap = used.split(|u| *u).map(<[bool]>::len).max().unwrap_or(0);
            assert!(
                longest_gap <= usize::from(max_gap),
                "{request:?} spans a gap of {longest_gap}"
            );
        }
        assert!(
            carried.iter().all(|c| *c == 1),
            "points carried {carried:?} times"
        );
    }

    proptest! {
        #[test]
        fn every_point_is_carried_once_within_caps_and_gaps(
            points in proptest::collection::vec(any_point(), 0..60),
            max_registers in 1_u16..130,
            max_gap in 0_u16..20,
        ) {
            let plan = plan_reads(&points, max_registers, max_gap);
            check(&plan, &points, max_registers, max_gap);
        }

        #[test]
        fn splitting_keeps_every_invariant(
            points in proptest::collection::vec(any_point(), 1..40),
            max_registers in 1_u16..130,
            max_gap in 0_u16..20,
            splits in proptest::collection::vec(any::<prop::sample::Index>(), 0..30),
        ) {
            let mut plan = plan_reads(&points, max_registers, max_gap);
            for split in splits {
                let index = split.index(plan.len());
                let before = plan.len();
                let single = plan.requests()[index].points.len() == 1;
                prop_assert_eq!(plan.split(index), !single);
                if single {
                    prop_assert_eq!(plan.len(), before);
                } else {
                    prop_assert!(plan.len() > before);
                }
                check(&plan, &points, max_registers, max_gap);
            }
        }

        #[test]
        fn planning_arbitrary_points_never_panics(
            addresses in proptest::collection::vec((any::<u16>(), 1_u16..200), 0..50),
            max_registers in any::<u16>(),
            max_gap in any::<u16>(),
        ) {
            let points: Vec<_> = addresses
                .into_iter()
                .map(|(address, length)| {
                    let mut p = at(Area::Holding, address, ValueType::String);
                    p.length = NonZeroU16::new(length);
                    p
                })
                .collect();
            let mut plan = plan_reads(&points, max_registers, max_gap);
            for index in 0..plan.len() * 2 {
                plan.split(index % plan.len().max(1));
            }
        }
    }
}
