//! Polling one device: run its [`ReadPlan`] over a [`Link`] and decode every
//! point.
//!
//! A [`DevicePoller`] owns the device's points and its plan, and keeps the
//! plan across polls, so splits made after "illegal data address"
//! (exception 2) are remembered: the next poll sends the split requests
//! directly. Per poll:
//! * each request is tried once plus `retries` more times on link errors
//!   (never on exceptions: the device answered);
//! * exception 2 on a request with several points splits it and reads the
//!   halves; a single point that still gets exception 2 reports
//!   `exception:2` while the others keep being read;
//! * once a request fails as unreachable (`timeout`, `disconnected`) after
//!   its retries, the rest of the poll is not sent: its points get the same
//!   error. A device that is down costs one timeout per try, not one per
//!   request (which matters on a shared RS-485 bus);
//! * every point of the device ends with exactly one result, a value or a
//!   [`PointError`] whose `word()` is a SPEC §5 error word.

use std::time::{Duration, SystemTime};

use spindle_config::model::{Device, Point};
use tokio::time::Instant;

use super::decode::{Decoded, decode_bit, decode_point};
use super::error::{ExceptionCode, LinkError, PointError, ReadError};
use super::plan::{ReadPlan, ReadRequest, plan_reads};
use super::transport::{Link, Response};

/// One request as sent in a poll, with what came back (for `spindle read`
/// hex output, and for health counters).
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub request: ReadRequest,
    /// Tries made: 0 when the request was not sent (the device was found
    /// unreachable earlier in the poll).
    pub attempts: u32,
    pub result: Result<Response, ReadError>,
}

/// What one poll of a device gave.
#[derive(Debug, Clone)]
pub struct PollOutcome {
    /// Wall-clock time the poll's first request was sent (telemetry `ts`).
    pub started: SystemTime,
    /// From the first request sent to the last answer.
    pub elapsed: Duration,
    /// One result per point, in the order of [`DevicePoller::points`].
    pub points: Vec<Result<Decoded, PointError>>,
    /// Every request in the order sent, split requests included.
    pub requests: Vec<RequestRecord>,
}

impl PollOutcome {
    /// Whether the device answered at least one request (with data or an
    /// exception): it is reachable.
    pub fn answered(&self) -> bool {
        self.requests.iter().any(|record| match &record.result {
            Ok(_) | Err(ReadError::Exception(_)) => true,
            Err(ReadError::Link(link)) => !link.is_unreachable(),
        })
    }

    /// The last request error of the poll, if any (availability `reason`).
    pub fn last_error(&self) -> Option<&ReadError> {
        self.requests
            .iter()
            .rev()
            .find_map(|record| record.result.as_ref().err())
    }
}

/// Polls one device, keeping its read plan across polls.
#[derive(Debug, Clone)]
pub struct DevicePoller {
    unit: u8,
    points: Vec<Point>,
    plan: ReadPlan,
    retries: u32,
}

impl DevicePoller {
    /// A poller for `device` (its unit, points, request limits and retries).
    pub fn new(device: &Device) -> Self {
        Self::with_points(
            device.unit,
            device.points.clone(),
            device.max_registers.get(),
            device.max_gap,
            device.retries,
        )
    }

    pub fn with_points(
        unit: u8,
        points: Vec<Point>,
        max_registers: u16,
        max_gap: u16,
        retries: u32,
    ) -> Self {
        let plan = plan_reads(&points, max_registers, max_gap);
        Self {
            unit,
            points,
            plan,
            retries,
        }
    }

    pub fn unit(&self) -> u8 {
        self.unit
    }

    pub fn points(&self) -> &[Point] {
        &self.points
    }

    /// Retries after a link error, per request (a device probed while
    /// unreachable gets one try, so it costs its bus one timeout).
    pub fn set_retries(&mut self, retries: u32) {
        self.retries = retries;
    }

    /// The current plan, with the splits learnt so far.
    pub fn plan(&self) -> &ReadPlan {
        &self.plan
    }

    /// Read every point once.
    pub async fn poll<L: Link + ?Sized>(&mut self, link: &mut L) -> PollOutcome {
        let mut results: Vec<Option<Result<Decoded, PointError>>> = vec![None; self.points.len()];
        let mut requests = Vec::with_capacity(self.plan.len());
        let mut started: Option<(SystemTime, Instant)> = None;
        let mut unreachable: Option<ReadError> = None;
        let mut index = 0;
        while let Some(request) = self.plan.requests().get(index).cloned() {
            if let Some(error) = &unreachable {
                for &point in &request.points {
                    set(&mut results, point, Err(error.clone().into()));
                }
                requests.push(RequestRecord {
                    request,
                    attempts: 0,
                    result: Err(error.clone()),
                });
                index += 1;
                continue;
            }
            if started.is_none() {
                link.ready().await;
                started = Some((SystemTime::now(), Instant::now()));
            }
            let (result, attempts) = self.read_with_retries(link, &request).await;
            match &result {
                Err(ReadError::Exception(ExceptionCode::ILLEGAL_DATA_ADDRESS))
                    if self.plan.split(index) =>
                {
                    // Read the halves next, at `index`; their points are set there.
                }
                Err(error) => {
                    for &point in &request.points {
                        set(&mut results, point, Err(error.clone().into()));
                    }
                    if error.is_unreachable() {
                        unreachable = Some(error.clone());
                    }
                    index += 1;
                }
                Ok(response) => {
                    for &point in &request.points {
                        let decoded = self
                            .points
                            .get(point)
                            .map(|p| decode_from(p, &request, response));
                        if let Some(decoded) = decoded {
                            set(&mut results, point, decoded);
                        }
                    }
                    index += 1;
                }
            }
            requests.push(RequestRecord {
                request,
                attempts,
                result,
            });
        }
        let (started, elapsed) = started.map_or((SystemTime::now(), Duration::ZERO), |(at, t)| {
            (at, t.elapsed())
        });
        let points = results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    // Every point is planned; this is a guard, not a path.
                    Err(LinkError::Malformed {
                        detail: "the point is in no request".into(),
                    }
                    .into())
                })
            })
            .collect();
        PollOutcome {
            started,
            elapsed,
            points,
            requests,
        }
    }

    async fn read_with_retries<L: Link + ?Sized>(
        &self,
        link: &mut L,
        request: &ReadRequest,
    ) -> (Result<Response, ReadError>, u32) {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = link
                .read(self.unit, request.area, request.start, request.count)
                .await;
            match result {
                Err(ReadError::Link(_)) if attempts <= self.retries => {}
                result => return (result, attempts),
            }
        }
    }
}

fn set(
    results: &mut [Option<Result<Decoded, PointError>>],
    point: usize,
    result: Result<Decoded, PointError>,
) {
    if let Some(slot) = results.get_mut(point) {
        *slot = Some(result);
    }
}

/// Decode `point` from the answer to `request`.
fn decode_from(
    point: &Point,
    request: &ReadRequest,
    response: &Response,
) -> Result<Decoded, PointError> {
    let offset =
        request
            .offset_of(point.address)
            .ok_or(super::decode::DecodeError::TooFewRegisters {
                needed: point.width(),
                got: 0,
            })?;
    let decoded = match response {
        Response::Registers(words) => {
            let words = words.get(offset..).unwrap_or_default();
            decode_point(point, words).map(|mut decoded| {
                if point.value_type != spindle_config::model::ValueType::String {
                    decoded.registers =
                        super::decode::Registers::first(words, usize::from(point.width()));
                }
                decoded
            })
        }
        Response::Bits(bits) => match bits.get(offset) {
            Some(bit) => decode_bit(point, *bit),
            None => Err(super::decode::DecodeError::TooFewRegisters { needed: 1, got: 0 }),
        },
    };
    Ok(decoded?)
}
