//! Finding the DL/T 645 meters on a line by address abbreviation (缩位寻址):
//! a request whose high address bytes are the wildcard `AA` is answered by
//! every meter whose low bytes match.
//!
//! The search probes the lowest byte A0 with 00–99 and five `AA` bytes;
//! on **every** answer — clean or garbled — it descends to the next byte
//! with the bytes found so far, until all six are known. A garbled answer
//! is two or more meters answering at once; a clean one may be too (one
//! driver can win the line), so a clean answer never ends the search of
//! its branch early. A probe costs one timeout when nobody answers.
//!
//! The probe is a read of data identifier `00010000` (forward active
//! energy, which every energy meter has); an abnormal answer is an answer.
//! Read address (13H to `AA…AA`) is offered only as the shortcut for a
//! line known to hold one meter ([`read_address`](super::read_address)).

use std::time::Duration;

use super::client::{Dlt645Line, answer_len};
use super::frame::{Address, Answer, Di, Request};
use crate::line::ExchangeError;

/// The identifier the probe reads.
pub const PROBE_DI: Di = Di(0x0001_0000);

/// What came back to one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Nothing within the timeout.
    Silent,
    /// A clean answer, from this meter.
    Clean(Address),
    /// Bytes that made no clean answer (meters answering at once).
    Garbled,
}

/// A meter the search found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub address: Address,
    /// Its full address was answered cleanly (otherwise two meters share it).
    pub clean: bool,
}

/// Probe `address` (usually abbreviated). A port that failed is an error.
pub async fn probe<L: Dlt645Line>(
    link: &mut L,
    address: Address,
    timeout: Duration,
) -> Result<Probe, ExchangeError<super::frame::BadAnswer>> {
    let request = Request::ReadData {
        address,
        di: PROBE_DI,
    };
    match link.ask(&request, answer_len(4), timeout).await {
        Ok(Answer::Data { .. } | Answer::Abnormal(_)) => {
            Ok(Probe::Clean(link.answered_address().unwrap_or(address)))
        }
        Ok(Answer::Address(meter)) => Ok(Probe::Clean(meter)),
        Err(ExchangeError::Timeout { .. }) => Ok(Probe::Silent),
        Err(error @ (ExchangeError::Closed | ExchangeError::Io(_))) => Err(error),
        Err(_) => Ok(Probe::Garbled),
    }
}

/// The BCD bytes 00–99.
fn bcd_bytes() -> impl Iterator<Item = u8> {
    (0_u8..100).map(|value| ((value / 10) << 4) | (value % 10))
}

/// Search the line (see the module doc). `progress` is called before each
/// probe with the address probed and the meters found so far.
pub async fn find_meters<L: Dlt645Line>(
    link: &mut L,
    timeout: Duration,
    mut progress: impl FnMut(&Address, usize),
) -> Result<Vec<Found>, ExchangeError<super::frame::BadAnswer>> {
    let mut found = Vec::new();
    // Depth-first: branches of known low bytes still to search.
    let mut branches: Vec<Vec<u8>> = vec![Vec::new()];
    while let Some(known) = branches.pop() {
        let mut answered = Vec::new();
        for byte in bcd_bytes() {
            let mut low = known.clone();
            low.push(byte);
            let Some(address) = Address::abbreviated(&low) else {
                continue;
            };
            progress(&address, found.len());
            match probe(link, address, timeout).await? {
                Probe::Silent => {}
                Probe::Clean(meter) if low.len() == 6 => found.push(Found {
                    address: meter,
                    clean: true,
                }),
                Probe::Garbled if low.len() == 6 => found.push(Found {
                    address,
                    clean: false,
                }),
                Probe::Clean(_) | Probe::Garbled => answered.push(low),
            }
        }
        // Search the lower bytes first (popped last-in, first-out).
        branches.extend(answered.into_iter().rev());
    }
    found.sort_by_key(|meter| meter.address);
    Ok(found)
}
