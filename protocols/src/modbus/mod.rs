//! Modbus client: links, read planning and decoding.
