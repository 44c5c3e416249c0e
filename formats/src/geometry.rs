//! The size of a sensor, which detection finds, encoders write and filters check against.

/// Sensor size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
}
