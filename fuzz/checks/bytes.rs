//! Turning fuzz bytes into values: a reader that runs out into zeros, and
//! the configured points the Modbus targets decode and plan.
//!
//! Shared by the fuzz targets (`fuzz/fuzz_targets/`) and the corpus replay
//! tests in the workspace crates, which include this file by path so that a
//! corpus file means the same input to both.

use std::num::NonZeroU16;

use spindle_config::model::{Area, Point, ValueType, WordOrder};

/// A little reader over the fuzz input; runs out into zeros.
#[derive(Debug)]
pub(crate) struct Bytes<'a>(pub(crate) &'a [u8]);

impl Bytes<'_> {
    pub(crate) fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((first, rest)) => {
                self.0 = rest;
                *first
            }
            None => 0,
        }
    }

    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub(crate) fn u64(&mut self) -> u64 {
        let mut raw = [0; 8];
        for byte in &mut raw {
            *byte = self.u8();
        }
        u64::from_be_bytes(raw)
    }

    pub(crate) fn f64(&mut self) -> f64 {
        f64::from_bits(self.u64())
    }

    pub(crate) fn point(&mut self) -> Point {
        let area = match self.u8() % 4 {
            0 => Area::Holding,
            1 => Area::Input,
            2 => Area::Coil,
            _ => Area::Discrete,
        };
        let value_type = match self.u8() % 10 {
            0 => ValueType::Bool,
            1 => ValueType::U16,
            2 => ValueType::I16,
            3 => ValueType::U32,
            4 => ValueType::I32,
            5 => ValueType::U64,
            6 => ValueType::I64,
            7 => ValueType::F32,
            8 => ValueType::F64,
            _ => ValueType::String,
        };
        let order = match self.u8() % 4 {
            0 => WordOrder::Abcd,
            1 => WordOrder::Cdab,
            2 => WordOrder::Badc,
            _ => WordOrder::Dcba,
        };
        let bit = self.u8();
        Point {
            name: "fuzz".into(),
            area,
            address: self.u16(),
            value_type,
            order,
            bit: (bit < 32).then_some(bit),
            length: NonZeroU16::new(u16::from(self.u8())),
            scale: self.f64(),
            offset: self.f64(),
            unit: None,
            counter: false,
            deadband: None,
            rollover: None,
        }
    }
}
