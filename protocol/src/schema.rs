//! The schemas of the tables: CD events `t int64, x int16, y int16, p int8`, and
//! external triggers `t int64, id int16, p int8`.

use std::collections::HashMap;

use arrow_schema::{DataType, Field, Schema};

/// Schema metadata key: sensor width in pixels, decimal.
pub const META_WIDTH: &str = "evshm.width";
/// Schema metadata key: sensor height in pixels, decimal.
pub const META_HEIGHT: &str = "evshm.height";
/// Schema metadata key: source format (`dat`, `evt2`, `evt3`, `es`..., see docs/FORMATS.md).
pub const META_FORMAT: &str = "evshm.format";
/// Schema metadata key: the recording's path relative to its root.
pub const META_SOURCE: &str = "evshm.source";
/// Schema metadata key: where the geometry came from (`header`, `system_id`, `default`).
pub const META_GEOMETRY: &str = "evshm.geometry";

/// The columns in order, with their Arrow types: time in microseconds, column, row,
/// polarity (0 or 1). 13 bytes per event.
pub const EVENT_COLUMNS: [(&str, DataType); 4] =
    [("t", DataType::Int64), ("x", DataType::Int16), ("y", DataType::Int16), ("p", DataType::Int8)];

/// The event schema with the given metadata. No column is nullable.
pub fn event_schema(metadata: HashMap<String, String>) -> Schema {
    let fields: Vec<Field> =
        EVENT_COLUMNS.iter().map(|(name, ty)| Field::new(*name, ty.clone(), false)).collect();
    Schema::new_with_metadata(fields, metadata)
}

/// The trigger table's columns in order: time in microseconds, trigger input, edge
/// (1 rising, 0 falling).
pub const TRIGGER_COLUMNS: [(&str, DataType); 3] =
    [("t", DataType::Int64), ("id", DataType::Int16), ("p", DataType::Int8)];

/// The trigger schema with the given metadata. No column is nullable.
pub fn trigger_schema(metadata: HashMap<String, String>) -> Schema {
    let fields: Vec<Field> =
        TRIGGER_COLUMNS.iter().map(|(name, ty)| Field::new(*name, ty.clone(), false)).collect();
    Schema::new_with_metadata(fields, metadata)
}
