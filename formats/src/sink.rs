//! Where decoded events go.

/// One change-detection ("CD") event: a pixel saw its brightness go up (`p = 1`) or down
/// (`p = 0`) at time `t`, in microseconds of sensor time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Event {
    /// Timestamp in microseconds, as the sensor encodes it (unwrapped, never shifted).
    pub t: i64,
    /// Column, 0 at the left.
    pub x: u16,
    /// Row, 0 at the top.
    pub y: u16,
    /// Polarity: 1 for an increase, 0 for a decrease.
    pub p: u8,
}

/// An external trigger edge recorded by the camera alongside the CD events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Trigger {
    /// Timestamp in microseconds.
    pub t: i64,
    /// Which trigger input fired.
    pub id: u8,
    /// Edge: 1 rising, 0 falling.
    pub p: u8,
}

/// Receives decoded events in stream order.
///
/// Decoders are generic over the sink, so a sink's methods inline into the decode loop.
pub trait EventSink {
    /// Takes one CD event.
    fn event(&mut self, t: i64, x: u16, y: u16, p: u8);

    /// Takes one external trigger; ignored unless the sink overrides it.
    fn trigger(&mut self, trigger: Trigger) {
        let _ = trigger;
    }
}

/// Passes on the CD events that lie inside a sensor of the given size and counts the
/// others: OpenEB drops EVT3 events on rows past the sensor's height, and evshm extends
/// that to every format and both axes, since such events can only come from corrupt data
/// or a header that lies about the geometry. Without a geometry (the file states none)
/// every event passes: a guessed size must not lose data.
#[derive(Debug, Clone)]
pub struct GeometryFilter<S> {
    /// Where the events inside the sensor go.
    pub inner: S,
    width: u32,
    height: u32,
    /// Events dropped so far.
    pub dropped: u64,
}

impl<S> GeometryFilter<S> {
    /// A filter for a sensor of the given size (or none) in front of `inner`.
    pub fn new(inner: S, geometry: Option<crate::Geometry>) -> Self {
        let (width, height) = geometry.map_or((u32::MAX, u32::MAX), |g| (g.width, g.height));
        Self { inner, width, height, dropped: 0 }
    }
}

impl<S: EventSink> EventSink for GeometryFilter<S> {
    #[inline]
    fn event(&mut self, t: i64, x: u16, y: u16, p: u8) {
        if u32::from(x) < self.width && u32::from(y) < self.height {
            self.inner.event(t, x, y, p);
        } else {
            self.dropped += 1;
        }
    }

    fn trigger(&mut self, trigger: Trigger) {
        self.inner.trigger(trigger);
    }
}

/// Counts CD events and triggers without storing them: what a counting pass decodes
/// into until its fast loops can take over.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CountingSink {
    /// CD events seen.
    pub events: u64,
    /// Triggers seen.
    pub triggers: u64,
}

impl EventSink for CountingSink {
    #[inline]
    fn event(&mut self, _t: i64, _x: u16, _y: u16, _p: u8) {
        self.events += 1;
    }

    fn trigger(&mut self, _trigger: Trigger) {
        self.triggers += 1;
    }
}

/// Collects everything into vectors: for tests, tools and small files.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VecSink {
    /// CD events in stream order.
    pub events: Vec<Event>,
    /// Triggers in stream order.
    pub triggers: Vec<Trigger>,
}

impl EventSink for VecSink {
    fn event(&mut self, t: i64, x: u16, y: u16, p: u8) {
        self.events.push(Event { t, x, y, p });
    }

    fn trigger(&mut self, trigger: Trigger) {
        self.triggers.push(trigger);
    }
}
