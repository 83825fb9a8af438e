//! Bus benchmark: 8 simulated energy meters on one RS-485 line with line
//! timing emulation over a pseudo-terminal, polled back to back with the real
//! `RtuLink` and `DevicePoller`, at 9600 and 19200 baud (8E1).
//!
//! Prints the transactions per second achieved against the theoretical
//! maximum for the same requests (frame bytes plus two silent intervals plus
//! the simulator's answer delay per transaction), and `spindle check`'s
//! bus-load estimate (`busload`) against the load measured at the same poll
//! rate.
//!
//! `--dlt645` runs the same with 8 simulated DL/T 645 meters instead, each
//! polled for four identifiers (energy, phase A voltage and current, total
//! power: four reads) through `RtuLink::poll_dlt645`; they answer with four
//! `FE` wake-up bytes and [`busload::DLT645_TURNAROUND`] after the silent
//! interval, as `busload` assumes.
//!
//! `cargo run --release -p spindle --example bus_bench [SECONDS_PER_BAUD] [--dlt645]`

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use spindle::busload::{self, DEVICE_TURNAROUND, DeviceLoad, Transaction};
use spindle_config::model::{Area, Parity, Point, SerialBus, ValueType, WordOrder};
use spindle_protocols::dlt645::poll::MeterPoller;
use spindle_protocols::dlt645::{Address, Di, Request, lookup};
use spindle_protocols::modbus::rtu::{encode_request, response_len};
use spindle_protocols::modbus::{DevicePoller, RtuLink};
use spindle_protocols::sim::dlt645::SimMeter;
use spindle_protocols::sim::{SimDevice, SimPtyServer};

const METERS: u8 = 8;
/// The poll interval the load figures are quoted at.
const POLL: Duration = Duration::from_secs(1);

fn point(name: String, area: Area, address: u16, value_type: ValueType) -> Point {
    Point {
        name,
        area,
        address,
        value_type,
        order: WordOrder::Abcd,
        bit: None,
        length: None,
        scale: 1.0,
        offset: 0.0,
        unit: None,
        counter: false,
        deadband: None,
        rollover: None,
    }
}

/// A meter's points: ten f32 readings (input 0–19) and two u32 energy
/// counters (holding 100–103): two requests per poll.
fn meter_points() -> Vec<Point> {
    let mut points: Vec<Point> = (0..10)
        .map(|i| point(format!("reading_{i}"), Area::Input, i * 2, ValueType::F32))
        .collect();
    points.push(point("import".into(), Area::Holding, 100, ValueType::U32));
    points.push(point("export".into(), Area::Holding, 102, ValueType::U32));
    points
}

fn bus(path: &str, baud: u32) -> SerialBus {
    SerialBus {
        name: "bench".into(),
        port: path.into(),
        baud: NonZeroU32::new(baud).unwrap_or(NonZeroU32::MIN),
        parity: Parity::Even,
        data_bits: 8,
        stop_bits: 1,
        turnaround: Duration::ZERO,
    }
}

struct Figures {
    transactions: u32,
    errors: u64,
    elapsed: Duration,
    cycles: u32,
    theoretical_per_cycle: Duration,
    estimated_load: f64,
}

fn run(baud: u32, seconds: u64) -> anyhow::Result<Figures> {
    let answer_delay = DEVICE_TURNAROUND;
    let devices: Vec<SimDevice> = (1..=METERS)
        .map(|unit| {
            let device = SimDevice::new([unit]);
            let words: Vec<u16> = (0..20).map(|i| u16::from(unit) * 100 + i).collect();
            device.set_registers(Area::Input, 0, &words);
            device.set_registers(Area::Holding, 100, &[0, 1, 0, 2]);
            device
        })
        .collect();
    // The simulator runs on its own thread and runtime, the client on this one.
    let (path_tx, path_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sim_bus = bus("", baud);
    let sim = std::thread::spawn(move || -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let server = SimPtyServer::open_timed(devices, &sim_bus, answer_delay)?;
            let _ = path_tx.send(server.path().to_owned());
            let _ = stop_rx.await;
            drop(server);
            anyhow::Ok(())
        })
    });
    let path = path_rx.recv()?;
    let wire = bus(&path, baud);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut pollers: Vec<DevicePoller> = (1..=METERS)
        .map(|unit| DevicePoller::with_points(unit, meter_points(), 125, 8, 0))
        .collect();

    // Theory and estimate, from the plans the pollers actually send.
    let mut theoretical_per_cycle = Duration::ZERO;
    let mut loads = Vec::new();
    for poller in &pollers {
        let requests: Vec<(Area, u16)> = poller
            .plan()
            .requests()
            .iter()
            .map(|r| (r.area, r.count))
            .collect();
        for &(area, count) in &requests {
            let bytes =
                encode_request(poller.unit(), area, 0, count).len() + response_len(area, count);
            theoretical_per_cycle += wire.char_time() * u32::try_from(bytes)?
                + wire.silent_interval() * 2
                + answer_delay;
        }
        loads.push(DeviceLoad {
            name: format!("meter-{}", poller.unit()),
            poll: POLL,
            requests: requests
                .iter()
                .map(|&(area, count)| Transaction::Modbus { area, count })
                .collect(),
        });
    }
    let estimated_load = busload::bus_load(&wire, &loads);

    let figures = runtime.block_on(async {
        let mut link = RtuLink::new(&wire, Duration::from_millis(500));
        // Warm up: open the port, one cycle.
        for poller in &mut pollers {
            poller.poll(&mut link).await;
        }
        let (mut transactions, mut errors, mut cycles) = (0_u32, 0_u64, 0_u32);
        let start = Instant::now();
        let end = start + Duration::from_secs(seconds);
        while Instant::now() < end {
            for poller in &mut pollers {
                let outcome = poller.poll(&mut link).await;
                for record in &outcome.requests {
                    transactions += record.attempts;
                    errors += u64::from(record.result.is_err());
                }
            }
            cycles += 1;
        }
        Figures {
            transactions,
            errors,
            elapsed: start.elapsed(),
            cycles,
            theoretical_per_cycle,
            estimated_load,
        }
    });
    let _ = stop_tx.send(());
    sim.join()
        .map_err(|_| anyhow::anyhow!("the simulator thread panicked"))??;
    Ok(figures)
}

/// The identifiers each simulated DL/T 645 meter is polled for.
const METER_DIS: [u32; 4] = [0x0001_0000, 0x0201_0100, 0x0202_0100, 0x0203_0000];

fn meter_address(index: u8) -> Address {
    Address::parse(&format!("0000000000{:02}", index + 1)).unwrap_or(Address::ANY)
}

fn run_dlt645(baud: u32, seconds: u64) -> anyhow::Result<Figures> {
    let answer_delay = busload::DLT645_TURNAROUND;
    let meters: Vec<SimMeter> = (0..METERS)
        .map(|index| {
            let mut meter = SimMeter::new(meter_address(index));
            meter.faults.wake_up = 4;
            meter.set(Di(0x0001_0000), 1206.42 + f64::from(index));
            meter.set(Di(0x0201_0100), 229.8);
            meter.set(Di(0x0202_0100), 12.345);
            meter.set(Di(0x0203_0000), 2.8316);
            meter
        })
        .collect();
    let (path_tx, path_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sim_bus = bus("", baud);
    let sim = std::thread::spawn(move || -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let server = SimPtyServer::open_meters_timed(meters, &sim_bus, answer_delay)?;
            let _ = path_tx.send(server.path().to_owned());
            let _ = stop_rx.await;
            drop(server);
            anyhow::Ok(())
        })
    });
    let path = path_rx.recv()?;
    let wire = bus(&path, baud);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let dis: Vec<Di> = METER_DIS.iter().map(|di| Di(*di)).collect();
    let mut pollers: Vec<MeterPoller> = (0..METERS)
        .map(|index| MeterPoller::new(meter_address(index), dis.clone()))
        .collect();
    let mut theoretical_per_cycle = Duration::ZERO;
    let mut loads = Vec::new();
    for (index, poller) in pollers.iter().enumerate() {
        let mut requests = Vec::new();
        for di in &dis {
            let value = lookup(*di).map_or(4, |info| u32::from(info.format.bytes));
            let request = Request::ReadData {
                address: poller.address(),
                di: *di,
            }
            .encode()
            .len();
            // The answer: four FE, 12 frame bytes, the identifier, the value.
            let bytes = u32::try_from(request)? + 4 + 12 + 4 + value;
            theoretical_per_cycle +=
                wire.char_time() * bytes + wire.silent_interval() * 2 + answer_delay;
            requests.push(Transaction::Dlt645 { value_bytes: value });
        }
        loads.push(DeviceLoad {
            name: format!("meter-{index}"),
            poll: POLL,
            requests,
        });
    }
    let estimated_load = busload::bus_load(&wire, &loads);
    let figures = runtime.block_on(async {
        let mut link = RtuLink::new(&wire, Duration::from_millis(500));
        for poller in &mut pollers {
            link.poll_dlt645(poller).await;
        }
        let (mut transactions, mut errors, mut cycles) = (0_u32, 0_u64, 0_u32);
        let start = Instant::now();
        let end = start + Duration::from_secs(seconds);
        while Instant::now() < end {
            for poller in &mut pollers {
                let reads = u32::try_from(poller.reads().len()).unwrap_or(u32::MAX);
                let results = link.poll_dlt645(poller).await;
                transactions += reads;
                errors += u64::try_from(results.iter().filter(|r| r.is_err()).count())
                    .unwrap_or(u64::MAX);
            }
            cycles += 1;
        }
        Figures {
            transactions,
            errors,
            elapsed: start.elapsed(),
            cycles,
            theoretical_per_cycle,
            estimated_load,
        }
    });
    let _ = stop_tx.send(());
    sim.join()
        .map_err(|_| anyhow::anyhow!("the simulator thread panicked"))??;
    Ok(figures)
}

fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let dlt645 = std::env::args().any(|a| a == "--dlt645");
    if dlt645 {
        println!(
            "{METERS} DL/T 645 meters on one bus (8E1), 4 reads each (energy, voltage, current, power), \
             polled back to back for {seconds} s per baud rate; simulator answer delay {} ms, 4 FE before each answer",
            busload::DLT645_TURNAROUND.as_millis()
        );
    } else {
        println!(
            "{METERS} meters on one bus (8E1), 2 requests each (20 + 4 registers), polled back to back \
             for {seconds} s per baud rate; simulator answer delay {} ms",
            DEVICE_TURNAROUND.as_millis()
        );
    }
    for baud in [9600, 19_200] {
        let f = if dlt645 {
            run_dlt645(baud, seconds)?
        } else {
            run(baud, seconds)?
        };
        let per_cycle = f.elapsed / f.cycles.max(1);
        let achieved = f64::from(f.transactions) / f.elapsed.as_secs_f64();
        let per_cycle_requests = f64::from(f.transactions) / f64::from(f.cycles.max(1));
        let theoretical = per_cycle_requests / f.theoretical_per_cycle.as_secs_f64();
        let measured_load = per_cycle.as_secs_f64() / POLL.as_secs_f64();
        println!(
            "{baud:>6} baud: {achieved:7.1} transactions/s of {theoretical:7.1} theoretical \
             = {:5.1} %  ({} errors; cycle {:.1} ms measured, {:.1} ms on the wire)",
            100.0 * achieved / theoretical,
            f.errors,
            per_cycle.as_secs_f64() * 1e3,
            f.theoretical_per_cycle.as_secs_f64() * 1e3,
        );
        println!(
            "              load at poll {:?} per meter: estimated {:5.1} %, measured {:5.1} % \
             (estimate / measured = {:.3})",
            POLL,
            100.0 * f.estimated_load,
            100.0 * measured_load,
            f.estimated_load / measured_load
        );
    }
    Ok(())
}
