//! Modbus TCP against a misbehaving server: a raw listener on 127.0.0.1 that
//! answers each request with crafted bytes. Every answer that arrived but is
//! not the answer asked for is `decode`, nothing at all is `timeout`, and
//! only a connection that closed before answering or could not be made is
//! `disconnected`; after each bad answer the next request on the same link
//! gets the right values.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{point, within, word};
use spindle_config::model::{Area, ValueType};
use spindle_protocols::modbus::{DevicePoller, Link, LinkError, ReadError, Response, TcpLink};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_millis(300);
const UNIT: u8 = 1;

/// What the server does with one request.
#[derive(Debug, Clone)]
enum Reply {
    /// Writes these frames in one go, the first carrying the request's
    /// transaction id, each next one the id after.
    Frames(Vec<Vec<u8>>),
    /// Writes these bytes as they are (no transaction id patched in).
    Raw(Vec<u8>),
    /// Writes the frame `piece` bytes at a time, `gap` apart.
    Pieces {
        frame: Vec<u8>,
        piece: usize,
        gap: Duration,
    },
    /// Writes these bytes (transaction id patched in), then closes.
    ThenClose(Vec<u8>),
    /// Says nothing and keeps the connection open.
    Silence,
    /// Closes the connection without a byte.
    Close,
}

/// A Modbus TCP server that answers from a script, then (script empty)
/// correctly: register `i` of a read from `start` holds `start + i`.
#[derive(Debug)]
struct RawServer {
    addr: SocketAddr,
    script: Arc<Mutex<VecDeque<Reply>>>,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawServer {
    async fn start(script: impl IntoIterator<Item = Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(script.into_iter().collect::<VecDeque<_>>()));
        let connections = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (script, connections) = (script.clone(), connections.clone());
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    connections.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve(stream, script.clone()));
                }
            }
        });
        RawServer {
            addr,
            script,
            connections,
            task,
        }
    }

    fn link(&self) -> TcpLink {
        TcpLink::new(self.addr.to_string(), TIMEOUT)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn script_done(&self) -> bool {
        self.script.lock().unwrap().is_empty()
    }
}

async fn serve(mut stream: TcpStream, script: Arc<Mutex<VecDeque<Reply>>>) {
    let mut request = [0_u8; 12];
    while stream.read_exact(&mut request).await.is_ok() {
        let transaction = u16::from_be_bytes([request[0], request[1]]);
        let next = script.lock().unwrap().pop_front();
        let reply = next.unwrap_or_else(|| {
            let start = u16::from_be_bytes([request[8], request[9]]);
            let count = u16::from_be_bytes([request[10], request[11]]);
            let words: Vec<u16> = (start..start + count).collect();
            Reply::Frames(vec![answer(request[7], &words)])
        });
        let written = match reply {
            Reply::Frames(frames) => {
                let mut bytes = Vec::new();
                for (id, frame) in (transaction..).zip(frames) {
                    bytes.extend(patched(frame, id));
                }
                stream.write_all(&bytes).await
            }
            Reply::Raw(bytes) => stream.write_all(&bytes).await,
            Reply::Pieces { frame, piece, gap } => {
                let mut result = Ok(());
                for chunk in patched(frame, transaction).chunks(piece) {
                    result = stream.write_all(chunk).await;
                    tokio::time::sleep(gap).await;
                }
                result
            }
            Reply::ThenClose(bytes) => {
                let _ = stream.write_all(&patched(bytes, transaction)).await;
                return;
            }
            Reply::Silence => Ok(()),
            Reply::Close => return,
        };
        if written.is_err() {
            return;
        }
    }
}

/// `bytes` with `transaction` in its first two bytes (if it has them).
fn patched(mut bytes: Vec<u8>, transaction: u16) -> Vec<u8> {
    for (byte, id) in bytes.iter_mut().zip(transaction.to_be_bytes()) {
        *byte = id;
    }
    bytes
}

/// An answer frame from `UNIT` carrying `pdu` (transaction id 0, patched in
/// by the server), its length field consistent with what it carries.
fn frame(pdu: &[u8]) -> Vec<u8> {
    let mut frame = vec![0, 0, 0, 0];
    frame.extend(u16::try_from(pdu.len() + 1).unwrap().to_be_bytes());
    frame.push(UNIT);
    frame.extend(pdu);
    frame
}

/// The right answer to a register read (function 3 or 4) of `words`.
fn answer(function: u8, words: &[u16]) -> Vec<u8> {
    let mut pdu = vec![function, u8::try_from(words.len() * 2).unwrap()];
    pdu.extend(words.iter().flat_map(|w| w.to_be_bytes()));
    frame(&pdu)
}

/// Reads holding 0..2 and returns the error, after checking its word.
async fn read_fails(link: &mut TcpLink, expected_word: &str) -> LinkError {
    match link.read(UNIT, Area::Holding, 0, 2).await {
        Err(ReadError::Link(error)) => {
            assert_eq!(error.word(), expected_word, "{error}");
            error
        }
        other => panic!("expected a link error ({expected_word}), got {other:?}"),
    }
}

/// The next request on the same link gets the right values.
async fn next_read_is_right(link: &mut TcpLink) {
    assert_eq!(
        link.read(UNIT, Area::Holding, 10, 2).await.unwrap(),
        Response::Registers(vec![10, 11])
    );
}

#[tokio::test]
async fn a_byte_count_promising_more_than_the_frame_carries_is_decode_not_disconnected() {
    within(async {
        // Byte count 8, but the frame (and its length field) carries 4 bytes:
        // tokio-modbus's codec reported this as a closed connection.
        let server = RawServer::start([Reply::Frames(vec![frame(&[3, 8, 0, 7, 0, 8])])]).await;
        let mut link = server.link();

        let started = Instant::now();
        let error = read_fails(&mut link, "decode").await;
        assert!(matches!(error, LinkError::Malformed { .. }), "{error}");
        assert!(!error.is_unreachable());
        assert!(
            started.elapsed() < TIMEOUT,
            "told at once, not at the timeout"
        );

        next_read_is_right(&mut link).await;
        assert_eq!(
            server.connections(),
            2,
            "the bad answer's connection was dropped"
        );
    })
    .await;
}

#[tokio::test]
async fn an_answer_that_stops_short_of_its_byte_count_is_decode_at_the_timeout() {
    within(async {
        // Header and byte count agree on 4 data bytes; 2 come, then silence.
        let short = answer(3, &[7, 8])[..11].to_vec();
        let server = RawServer::start([Reply::Frames(vec![short])]).await;
        let mut link = server.link();

        let started = Instant::now();
        let error = read_fails(&mut link, "decode").await;
        assert!(matches!(error, LinkError::Truncated { got: 11 }), "{error}");
        assert!(started.elapsed() >= TIMEOUT);

        next_read_is_right(&mut link).await;
    })
    .await;
}

#[tokio::test]
async fn an_answer_cut_off_by_the_peer_closing_is_decode_not_disconnected() {
    within(async {
        // Bytes of an answer arrived, then the peer closed in the middle of
        // it. The device was there and answered, but its answer is not whole:
        // that is `decode` (the answer failed), not `disconnected` (which
        // would say the device could not be reached and flip it offline).
        let short = answer(3, &[7, 8])[..11].to_vec();
        let server = RawServer::start([Reply::ThenClose(short)]).await;
        let mut link = server.link();

        let started = Instant::now();
        let error = read_fails(&mut link, "decode").await;
        assert!(matches!(error, LinkError::Truncated { got: 11 }), "{error}");
        assert!(started.elapsed() < TIMEOUT, "the close ends the wait");

        next_read_is_right(&mut link).await;
    })
    .await;
}

#[tokio::test]
async fn data_beyond_the_byte_count_is_decode() {
    within(async {
        // Byte count 4, but the frame (and its length field) carries 6 bytes.
        let server =
            RawServer::start([Reply::Frames(vec![frame(&[3, 4, 0, 7, 0, 8, 0, 9])])]).await;
        let mut link = server.link();

        let error = read_fails(&mut link, "decode").await;
        assert!(matches!(error, LinkError::Malformed { .. }), "{error}");

        next_read_is_right(&mut link).await;
    })
    .await;
}

#[tokio::test]
async fn more_registers_than_asked_is_decode() {
    within(async {
        let server = RawServer::start([Reply::Frames(vec![answer(3, &[7, 8, 9])])]).await;
        let mut link = server.link();

        let error = read_fails(&mut link, "decode").await;
        assert!(matches!(error, LinkError::Malformed { .. }), "{error}");

        next_read_is_right(&mut link).await;
    })
    .await;
}

#[tokio::test]
async fn an_odd_byte_count_for_a_register_read_is_decode() {
    within(async {
        let server = RawServer::start([Reply::Frames(vec![frame(&[3, 3, 0, 7, 0])])]).await;
        let mut link = server.link();

        let error = read_fails(&mut link, "decode").await;
        assert!(matches!(error, LinkError::Malformed { .. }), "{error}");

        next_read_is_right(&mut link).await;
    })
    .await;
}

#[tokio::test]
async fn an_mbap_length_pointing_past_the_frame_is_decode() {
    within(async {
        // The length field says 32 bytes follow, the byte count 4 (and 4
        // come): they disagree, so it is told at once.
        let mut disagreeing = answer(3, &[7, 8]);
        disagreeing[5] = 32;
        // Length field and byte count agree on 8 data bytes; 4 come: the
        // answer is still incomplete at the timeout.
        let mut agreeing = frame(&[3, 8, 0, 7, 0, 8]);
        agreeing[5] = 11;
        let server = RawServer::start([
            Reply::Frames(vec![disagreeing]),
            Reply::Frames(vec![agreeing]),
        ])
        .await;
        let mut link = server.link();

        let started = Instant::now();
        let error = read_fails(&mut link, "decode").await;
        assert!(matches!(error, LinkError::Malformed { .. }), "{error}");
        assert!(
            started.elapsed() < TIMEOUT,
            "told at once, not at the timeout"
        );

        let error = read_fails(&mut link, "decode").await;
        assert!(matches!(error, LinkError::Truncated { got: 13 }), "{error}");

        next_read_is_right(&mut link).await;
    })
    .await;
}

#[tokio::test]
async fn every_other_inconsistent_header_field_is_decode_and_the_next_read_is_right() {
    within(async {
        let good = answer(3, &[7, 8]);
        let mut protocol = good.clone();
        protocol[3] = 1;
        let mut zero_length = good.clone();
        zero_length[5] = 0;
        let mut other_unit = good.clone();
        other_unit[6] = UNIT + 1;
        let cases = [
            // Transaction id 0x7777: not the request's.
            ("another transaction", Reply::Raw(patched(good, 0x7777))),
            ("another protocol id", Reply::Frames(vec![protocol])),
            ("a zero length field", Reply::Frames(vec![zero_length])),
            ("another unit", Reply::Frames(vec![other_unit])),
            ("another function", Reply::Frames(vec![answer(4, &[7, 8])])),
            (
                "a long exception",
                Reply::Frames(vec![frame(&[0x83, 2, 0])]),
            ),
            ("fewer registers", Reply::Frames(vec![answer(3, &[7])])),
        ];
        for (case, reply) in cases {
            let server = RawServer::start([reply]).await;
            let mut link = server.link();
            let error = read_fails(&mut link, "decode").await;
            assert!(!error.is_unreachable(), "{case}: {error}");
            next_read_is_right(&mut link).await;
            assert!(server.script_done(), "{case}");
        }
    })
    .await;
}

#[tokio::test]
async fn bytes_behind_a_whole_answer_never_reach_the_next_request() {
    within(async {
        // A whole answer, then a second one carrying the next transaction id
        // (what a late or duplicated reply would look like): the first is
        // used, the second must not be taken for the next answer.
        let server = RawServer::start([Reply::Frames(vec![
            answer(3, &[7, 8]),
            answer(3, &[666, 666]),
        ])])
        .await;
        let mut link = server.link();

        assert_eq!(
            link.read(UNIT, Area::Holding, 0, 2).await.unwrap(),
            Response::Registers(vec![7, 8])
        );
        next_read_is_right(&mut link).await;
        assert_eq!(
            server.connections(),
            2,
            "the stray bytes' connection was dropped"
        );
    })
    .await;
}

#[tokio::test]
async fn a_right_answer_split_over_many_small_writes_is_read_whole() {
    within(async {
        // 13 bytes, one every 15 ms: whole after about 195 ms, within 300 ms.
        let server = RawServer::start([Reply::Pieces {
            frame: answer(3, &[7, 8]),
            piece: 1,
            gap: Duration::from_millis(15),
        }])
        .await;
        let mut link = server.link();

        assert_eq!(
            link.read(UNIT, Area::Holding, 0, 2).await.unwrap(),
            Response::Registers(vec![7, 8])
        );
        next_read_is_right(&mut link).await;
        assert_eq!(
            server.connections(),
            1,
            "a good answer keeps its connection"
        );
    })
    .await;
}

#[tokio::test]
async fn an_exception_answer_keeps_the_connection() {
    within(async {
        let server = RawServer::start([Reply::Frames(vec![frame(&[0x83, 2])])]).await;
        let mut link = server.link();

        let result = link.read(UNIT, Area::Holding, 0, 2).await;
        assert_eq!(result.unwrap_err().word(), "exception:2");
        next_read_is_right(&mut link).await;
        assert_eq!(server.connections(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_connection_the_device_closed_while_idle_is_reopened_before_the_next_request() {
    within(async {
        // A whole answer, then the device closes its end (as some gateways do
        // after each answer or when idle): nothing was lost, and the next
        // request goes out on a new connection instead of failing.
        let server = RawServer::start([Reply::ThenClose(answer(3, &[7, 8]))]).await;
        let mut link = server.link();

        assert_eq!(
            link.read(UNIT, Area::Holding, 0, 2).await.unwrap(),
            Response::Registers(vec![7, 8])
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        next_read_is_right(&mut link).await;
        assert_eq!(server.connections(), 2);
    })
    .await;
}

#[tokio::test]
async fn no_answer_at_all_is_timeout() {
    within(async {
        let server = RawServer::start([Reply::Silence]).await;
        let mut link = server.link();

        let started = Instant::now();
        let error = read_fails(&mut link, "timeout").await;
        assert!(matches!(error, LinkError::Timeout { .. }), "{error}");
        assert!(started.elapsed() >= TIMEOUT);

        next_read_is_right(&mut link).await;
        assert_eq!(
            server.connections(),
            2,
            "a late reply could follow: reconnected"
        );
    })
    .await;
}

#[tokio::test]
async fn a_server_that_closes_without_answering_is_disconnected() {
    within(async {
        let server = RawServer::start([Reply::Close]).await;
        let mut link = server.link();

        let error = read_fails(&mut link, "disconnected").await;
        assert!(error.is_unreachable());

        next_read_is_right(&mut link).await;
    })
    .await;
}

#[tokio::test]
async fn a_refused_connection_is_disconnected() {
    within(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let mut link = TcpLink::new(addr.to_string(), TIMEOUT);

        let error = read_fails(&mut link, "disconnected").await;
        assert!(matches!(error, LinkError::Connect { .. }), "{error}");
    })
    .await;
}

#[tokio::test]
async fn a_device_whose_answers_are_malformed_has_answered_and_its_points_say_decode() {
    within(async {
        // What `spindle run` sees: every point `decode`, and the device
        // answered (it stays online), poll after poll.
        let bad = frame(&[3, 8, 0, 7, 0, 8]);
        let server = RawServer::start([
            Reply::Frames(vec![bad.clone()]),
            Reply::Frames(vec![bad.clone()]),
            Reply::Frames(vec![bad]),
        ])
        .await;
        let mut link = server.link();
        let mut poller = DevicePoller::with_points(
            UNIT,
            vec![
                point("a", Area::Holding, 0, ValueType::U16),
                point("b", Area::Holding, 1, ValueType::U16),
            ],
            125,
            8,
            0,
        );

        for _ in 0..3 {
            let outcome = poller.poll(&mut link).await;
            assert!(outcome.answered());
            assert_eq!(word(&outcome.points[0]), "decode");
            assert_eq!(word(&outcome.points[1]), "decode");
        }
        let outcome = poller.poll(&mut link).await;
        assert!(outcome.points.iter().all(Result::is_ok), "{outcome:?}");
    })
    .await;
}
