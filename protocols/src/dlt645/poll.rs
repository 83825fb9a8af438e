//! One poll of one DL/T 645 meter: the reads that carry its points, and a
//! result per point.
//!
//! Points whose identifiers belong to one block of the built-in table (the
//! phase voltages `0201FF00`, the tariffs of one energy `0001FF00`, …) are
//! read with one block read when two or more of them are configured. A meter
//! that refuses a block (an abnormal answer, or an answer of the wrong
//! length — many meters implement only the single identifiers) gets its
//! members read one by one in the same poll, and the refusal is remembered:
//! later polls read them singly from the start, as the Modbus planner
//! remembers the splits exception 2 forced.
//!
//! As the Modbus poller does, each read is tried once plus `retries` more
//! times on line errors (never after an abnormal answer: the meter
//! answered), and once a read fails as unreachable (`timeout`,
//! `disconnected`) after its retries, the rest of the poll is not sent: its
//! points get the same error, so a meter that is down costs its bus one
//! timeout per try, not one per identifier.
//!
//! A point's error word: `timeout`, `decode`, `disconnected` from the line;
//! `abnormal:<reason>` from the meter; `decode` for value bytes that are not
//! the identifier's format.

use std::collections::BTreeSet;
use std::time::Duration;

use thiserror::Error;

use super::client::{Dlt645Line, ReadError, read_value};
use super::frame::{Address, Di};
use super::table::{ValueError, block_members, decode_value, lookup};

/// Why a point has no value in a poll.
#[derive(Debug, Clone, Error)]
pub enum PointError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Value(#[from] ValueError),
}

impl PointError {
    /// The SPEC §5 error word.
    pub fn word(&self) -> String {
        match self {
            PointError::Read(read) => read.word(),
            PointError::Value(_) => "decode".to_owned(),
        }
    }

    /// Whether the meter (or the line) may be unreachable.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, PointError::Read(read) if read.is_unreachable())
    }
}

/// One read of a poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeterRead {
    /// One identifier, for the point at this index.
    Single { di: Di, point: usize },
    /// A block; each member with the index of the point it feeds, if any.
    Block {
        di: Di,
        members: Vec<(Di, Option<usize>)>,
    },
}

impl MeterRead {
    /// Value bytes the answer carries (a block: its members' together).
    pub fn value_len(&self) -> usize {
        match self {
            MeterRead::Single { di, .. } => value_len(*di),
            MeterRead::Block { members, .. } => {
                members.iter().map(|(member, _)| value_len(*member)).sum()
            }
        }
    }
}

/// The block `di` belongs to in the built-in table, if any.
fn block_of(di: Di) -> Option<Di> {
    let [di0, _, di2, di3] = di.0.to_le_bytes();
    let block = Di(u32::from_le_bytes([di0, 0xFF, di2, di3]));
    block_members(block)
        .is_some_and(|members| members.contains(&di))
        .then_some(block)
}

/// The reads of `points`, blocks merged except where `refused`.
pub fn plan_reads(points: &[Di], refused: &BTreeSet<Di>) -> Vec<MeterRead> {
    let mut reads = Vec::new();
    let mut planned = BTreeSet::new();
    for (index, di) in points.iter().enumerate() {
        let block = block_of(*di).filter(|block| !refused.contains(block));
        let in_block = |member: &Di| points.iter().position(|point| point == member);
        match block.and_then(|block| Some((block, block_members(block)?))) {
            Some((block, members))
                if members.iter().filter(|m| in_block(m).is_some()).count() >= 2 =>
            {
                if planned.insert(block) {
                    reads.push(MeterRead::Block {
                        di: block,
                        members: members.iter().map(|m| (*m, in_block(m))).collect(),
                    });
                }
            }
            _ => reads.push(MeterRead::Single {
                di: *di,
                point: index,
            }),
        }
    }
    reads
}

/// Bytes a single identifier's value takes (4 when unknown).
fn value_len(di: Di) -> usize {
    lookup(di).map_or(4, |info| usize::from(info.format.bytes))
}

/// Polls one meter; keeps the blocks it refused.
#[derive(Debug, Clone)]
pub struct MeterPoller {
    address: Address,
    points: Vec<Di>,
    refused: BTreeSet<Di>,
    reads: Vec<MeterRead>,
    retries: u32,
}

impl MeterPoller {
    /// A poller without retries ([`MeterPoller::set_retries`]).
    pub fn new(address: Address, points: Vec<Di>) -> Self {
        let refused = BTreeSet::new();
        let reads = plan_reads(&points, &refused);
        MeterPoller {
            address,
            points,
            refused,
            reads,
            retries: 0,
        }
    }

    /// Tries after the first on a line error (the device's `retries`; 0
    /// while it is offline, as for Modbus).
    pub fn set_retries(&mut self, retries: u32) {
        self.retries = retries;
    }

    /// The identifiers polled, one per point.
    pub fn points(&self) -> &[Di] {
        &self.points
    }

    /// The meter polled.
    pub fn address(&self) -> Address {
        self.address
    }

    pub fn reads(&self) -> &[MeterRead] {
        &self.reads
    }

    /// One poll: a value per point (in the point order), the identifier's
    /// value as the standard scales it.
    pub async fn poll<L: Dlt645Line>(
        &mut self,
        link: &mut L,
        timeout: Duration,
    ) -> Vec<Result<f64, PointError>> {
        let mut results: Vec<Option<Result<f64, PointError>>> = vec![None; self.points.len()];
        let mut replan = false;
        let retries = self.retries;
        for read in self.reads.clone() {
            // A meter found unreachable is not asked again in this poll.
            if let Some(unreachable) = results
                .iter()
                .flatten()
                .find_map(|result| result.as_ref().err().filter(|e| e.is_unreachable()))
                .cloned()
            {
                for slot in results.iter_mut().filter(|slot| slot.is_none()) {
                    *slot = Some(Err(unreachable.clone()));
                }
                break;
            }
            match read {
                MeterRead::Single { di, point } => {
                    let result = read_single(link, self.address, di, timeout, retries).await;
                    if let Some(slot) = results.get_mut(point) {
                        *slot = Some(result);
                    }
                }
                MeterRead::Block { di, members } => {
                    let len: usize = members.iter().map(|(member, _)| value_len(*member)).sum();
                    let answer = read_retried(link, self.address, di, len, timeout, retries).await;
                    let split = match answer {
                        Ok(value) if value.len() == len => Some(value),
                        Ok(_) | Err(ReadError::Abnormal(_)) => None,
                        Err(error) => {
                            for (_, point) in &members {
                                if let Some(slot) = point.and_then(|p| results.get_mut(p)) {
                                    *slot = Some(Err(error.clone().into()));
                                }
                            }
                            continue;
                        }
                    };
                    let Some(value) = split else {
                        // Refused: read the members singly, now and from now on.
                        tracing::debug!(meter = %self.address, block = %di, "The meter refused a block read; reading its members singly");
                        self.refused.insert(di);
                        replan = true;
                        for (member, point) in members {
                            if let Some(point) = point {
                                let result =
                                    read_single(link, self.address, member, timeout, retries).await;
                                if let Some(slot) = results.get_mut(point) {
                                    *slot = Some(result);
                                }
                            }
                        }
                        continue;
                    };
                    let mut rest = value.as_slice();
                    for (member, point) in members {
                        let (bytes, tail) = rest.split_at(value_len(member).min(rest.len()));
                        rest = tail;
                        if let Some(slot) = point.and_then(|p| results.get_mut(p)) {
                            *slot = Some(
                                decode_value(member, bytes)
                                    .map(super::bcd::Bcd::value)
                                    .map_err(PointError::from),
                            );
                        }
                    }
                }
            }
        }
        if replan {
            self.reads = plan_reads(&self.points, &self.refused);
        }
        results
            .into_iter()
            .map(|result| result.unwrap_or(Err(PointError::Read(ReadError::Unexpected))))
            .collect()
    }
}

async fn read_single<L: Dlt645Line>(
    link: &mut L,
    address: Address,
    di: Di,
    timeout: Duration,
    retries: u32,
) -> Result<f64, PointError> {
    let value = read_retried(link, address, di, value_len(di), timeout, retries).await?;
    Ok(decode_value(di, &value)?.value())
}

/// [`read_value`], tried again up to `retries` times after a line error.
async fn read_retried<L: Dlt645Line>(
    link: &mut L,
    address: Address,
    di: Di,
    len: usize,
    timeout: Duration,
    retries: u32,
) -> Result<Vec<u8>, ReadError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match read_value(link, address, di, len, timeout).await {
            Err(ReadError::Link(_)) if attempts <= retries => {}
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_members_of_a_block_are_read_as_the_block_unless_it_was_refused() {
        let points = [
            Di(0x0201_0100),
            Di(0x0201_0300),
            Di(0x0001_0000),
            Di(0x0280_0002),
        ];
        let reads = plan_reads(&points, &BTreeSet::new());
        assert_eq!(
            reads,
            [
                MeterRead::Block {
                    di: Di(0x0201_FF00),
                    members: vec![
                        (Di(0x0201_0100), Some(0)),
                        (Di(0x0201_0200), None),
                        (Di(0x0201_0300), Some(1))
                    ]
                },
                MeterRead::Single {
                    di: Di(0x0001_0000),
                    point: 2
                },
                MeterRead::Single {
                    di: Di(0x0280_0002),
                    point: 3
                },
            ]
        );
        let refused = BTreeSet::from([Di(0x0201_FF00)]);
        assert_eq!(plan_reads(&points, &refused).len(), 4);
    }
}
