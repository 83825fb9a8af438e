//! The DL/T 645-2007 client: one value of one meter over a serial line
//! ([`LineLink`] with [`Dlt645Framing`]), read-only by type — it takes
//! addresses and data identifiers and builds only [`Request`]s.
//!
//! A value whose answer says more follows (B1H) is completed with read
//! subsequent data (12H, frames 1, 2, …), at most [`MAX_FRAMES`] frames in
//! all; a meter that never stops is `decode`. An abnormal answer is
//! [`ReadError::Abnormal`], the error word `abnormal:<reason>`.

use std::future::Future;
use std::time::Duration;

use thiserror::Error;

use super::frame::{
    Address, Answer, AnswerError, BadAnswer, Di, Dlt645Framing, ErrorByte, OVERHEAD, PREAMBLE_LEN,
    Request, Scanned, parse_frame,
};
use crate::line::{
    BusAnswer, BusError, BusRequest, Clock, ExchangeError, LineLink, MixedFraming, Port,
};

/// A serial line speaking DL/T 645 only.
pub type Dlt645Link<P, C> = LineLink<Dlt645Framing, P, C>;

/// A line the client can ask: DL/T 645 only, or a bus shared with Modbus.
pub trait Dlt645Line: Send {
    fn ask(
        &mut self,
        request: &Request,
        answer_len: usize,
        timeout: Duration,
    ) -> impl Future<Output = Result<Answer, ExchangeError<BadAnswer>>> + Send;

    /// The bytes of the last answer taken.
    fn last_answer(&self) -> &[u8];

    /// The address of the meter that sent the last answer taken.
    fn answered_address(&self) -> Option<Address> {
        match parse_frame(self.last_answer()) {
            Ok(Scanned::Complete { frame, .. }) => Address::from_wire(frame.address),
            _ => None,
        }
    }
}

impl<P: Port, C: Clock> Dlt645Line for LineLink<Dlt645Framing, P, C> {
    async fn ask(
        &mut self,
        request: &Request,
        answer_len: usize,
        timeout: Duration,
    ) -> Result<Answer, ExchangeError<BadAnswer>> {
        self.exchange(request, &request.encode(), answer_len, timeout)
            .await
    }

    fn last_answer(&self) -> &[u8] {
        LineLink::last_answer(self)
    }
}

impl<P: Port, C: Clock> Dlt645Line for LineLink<MixedFraming, P, C> {
    async fn ask(
        &mut self,
        request: &Request,
        answer_len: usize,
        timeout: Duration,
    ) -> Result<Answer, ExchangeError<BadAnswer>> {
        let asked = BusRequest::Dlt645(*request);
        let unexpected = || {
            BadAnswer::Answer(AnswerError::Malformed {
                detail: "a Modbus answer to a DL/T 645 request".into(),
            })
        };
        match self
            .exchange(&asked, &request.encode(), answer_len, timeout)
            .await
        {
            Ok(BusAnswer::Dlt645(answer)) => Ok(answer),
            Ok(BusAnswer::Modbus(_)) => Err(ExchangeError::Garbage(unexpected())),
            Err(error) => Err(match error {
                ExchangeError::Timeout { after } => ExchangeError::Timeout { after },
                ExchangeError::Truncated { got } => ExchangeError::Truncated { got },
                ExchangeError::Closed => ExchangeError::Closed,
                ExchangeError::Io(error) => ExchangeError::Io(error),
                ExchangeError::NotQuiet => ExchangeError::NotQuiet,
                ExchangeError::Garbage(BusError::Dlt645(error)) => ExchangeError::Garbage(error),
                ExchangeError::Garbage(BusError::Modbus(_)) => ExchangeError::Garbage(unexpected()),
            }),
        }
    }

    fn last_answer(&self) -> &[u8] {
        LineLink::last_answer(self)
    }
}

/// Frames one value may take: the first answer and 15 subsequent ones.
pub const MAX_FRAMES: usize = 16;

/// Why a read brought no value.
#[derive(Debug, Clone, Error)]
pub enum ReadError {
    #[error(transparent)]
    Link(#[from] ExchangeError<BadAnswer>),
    #[error("the meter answered abnormally: {0}")]
    Abnormal(ErrorByte),
    #[error("the value had not ended after {MAX_FRAMES} frames")]
    TooManyFrames,
    #[error("the meter answered read address to a read of data")]
    Unexpected,
    /// The port could not be opened.
    #[error(transparent)]
    Open(crate::modbus::error::LinkError),
}

impl ReadError {
    /// The SPEC §5 error word: `timeout`, `decode`, `disconnected`,
    /// `abnormal:<reason>`.
    pub fn word(&self) -> String {
        match self {
            ReadError::Link(link) => link.word().to_owned(),
            ReadError::Abnormal(error) => format!("abnormal:{}", error.word()),
            ReadError::TooManyFrames | ReadError::Unexpected => "decode".to_owned(),
            ReadError::Open(error) => error.word().to_owned(),
        }
    }

    /// Whether the meter (or the line) may be unreachable.
    pub fn is_unreachable(&self) -> bool {
        match self {
            ReadError::Link(link) => link.word() != "decode",
            ReadError::Open(_) => true,
            _ => false,
        }
    }
}

/// Bytes of an answer carrying `value_len` value bytes (wake-up bytes and
/// a frame number included, the most a meter sends).
pub fn answer_len(value_len: usize) -> usize {
    PREAMBLE_LEN + OVERHEAD + 4 + value_len + 1
}

/// Read `di` from the meter at `address`: the value bytes (minus 33H, low
/// byte first), all frames joined. `value_len` is the expected length (for
/// the answer's on-wire time).
pub async fn read_value<L: Dlt645Line>(
    link: &mut L,
    address: Address,
    di: Di,
    value_len: usize,
    timeout: Duration,
) -> Result<Vec<u8>, ReadError> {
    let mut request = Request::ReadData { address, di };
    let mut value = Vec::new();
    for frame in 1..=MAX_FRAMES {
        let answer = link.ask(&request, answer_len(value_len), timeout).await?;
        match answer {
            Answer::Data { value: part, more } => {
                value.extend(part);
                if !more {
                    return Ok(value);
                }
            }
            Answer::Abnormal(error) => return Err(ReadError::Abnormal(error)),
            Answer::Address(_) => return Err(ReadError::Unexpected),
        }
        request = Request::ReadSubsequent {
            address,
            di,
            seq: u8::try_from(frame).unwrap_or(u8::MAX),
        };
    }
    Err(ReadError::TooManyFrames)
}

/// Read the address of the one meter on the line (13H to `AA…AA`).
pub async fn read_address<L: Dlt645Line>(
    link: &mut L,
    timeout: Duration,
) -> Result<Address, ReadError> {
    let request = Request::ReadAddress;
    match link.ask(&request, answer_len(6), timeout).await? {
        Answer::Address(address) => Ok(address),
        Answer::Abnormal(error) => Err(ReadError::Abnormal(error)),
        Answer::Data { .. } => Err(ReadError::Unexpected),
    }
}
