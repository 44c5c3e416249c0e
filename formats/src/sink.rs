//! Where decoded events go.

use crate::geometry::Geometry;

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
/// A sink that stores events in columns should also offer [`EventSink::slots`]: the
/// decoders then write runs of ordinary events straight into the columns, many at a time
/// and without a call per event, and use [`EventSink::event`] only for what their fast
/// loops leave to it (events outside the slots' bounds, the last few events before the
/// columns are full, and every event when no slots are offered).
pub trait EventSink {
    /// Takes one CD event.
    fn event(&mut self, t: i64, x: u16, y: u16, p: u8);

    /// Takes one external trigger; ignored unless the sink overrides it.
    fn trigger(&mut self, trigger: Trigger) {
        let _ = trigger;
    }

    /// The free column slots after the events taken so far, for a decoder to write events
    /// into directly, or `None` (the default) to receive every event through
    /// [`EventSink::event`]. What a decoder writes there counts only once it calls
    /// [`EventSink::commit`].
    fn slots(&mut self) -> Option<Slots<'_>> {
        None
    }

    /// Takes the first `n` slots of the last [`EventSink::slots`] as the next `n` events.
    fn commit(&mut self, n: usize) {
        debug_assert_eq!(n, 0, "commit without slots");
    }
}

/// Column slots a decoder writes events into directly: four columns of one length (the
/// event table's `t`, `x`, `y`, `p`), and the bounds of the events that may go there.
#[derive(Debug)]
pub struct Slots<'a> {
    pub(crate) t: &'a mut [i64],
    pub(crate) x: &'a mut [i16],
    pub(crate) y: &'a mut [i16],
    pub(crate) p: &'a mut [i8],
    /// Only events with `x < width` and `y < height` may be written here; the others go
    /// through [`EventSink::event`], which decides what becomes of them.
    pub(crate) width: u32,
    pub(crate) height: u32,
}

impl<'a> Slots<'a> {
    /// Slots over the columns, cut to the shortest of them, taking events of any
    /// coordinates.
    #[inline]
    pub fn new(t: &'a mut [i64], x: &'a mut [i16], y: &'a mut [i16], p: &'a mut [i8]) -> Self {
        let len = t.len().min(x.len()).min(y.len()).min(p.len());
        Self {
            t: &mut t[..len],
            x: &mut x[..len],
            y: &mut y[..len],
            p: &mut p[..len],
            width: u32::MAX,
            height: u32::MAX,
        }
    }

    /// The same slots, for events inside a sensor of this size only.
    #[inline]
    pub fn within(self, width: u32, height: u32) -> Self {
        Self { width: self.width.min(width), height: self.height.min(height), ..self }
    }

    /// The first `n` slots, if there are that many: the room a fast loop writes a block of
    /// `n` events into.
    #[inline]
    pub(crate) fn take(self, n: usize) -> Option<Self> {
        if self.len() < n {
            return None;
        }
        Some(Self {
            t: &mut self.t[..n],
            x: &mut self.x[..n],
            y: &mut self.y[..n],
            p: &mut self.p[..n],
            ..self
        })
    }

    /// How many events fit.
    #[inline]
    pub fn len(&self) -> usize {
        self.t.len()
    }

    /// Whether no event fits.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.t.is_empty()
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
    pub fn new(inner: S, geometry: Option<Geometry>) -> Self {
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

    #[inline]
    fn slots(&mut self) -> Option<Slots<'_>> {
        let (width, height) = (self.width, self.height);
        self.inner.slots().map(|slots| slots.within(width, height))
    }

    #[inline]
    fn commit(&mut self, n: usize) {
        self.inner.commit(n);
    }
}

/// Counts CD events and triggers without storing them: for checking what a decode yields,
/// or timing a decoder without the cost of storing events.
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

/// Collects events into four growing columns, as an event table holds them, and offers
/// them as [`Slots`]: for tools, benches and tests that want the decoders' fast loops
/// without a shared-memory segment.
#[derive(Debug, Default, Clone)]
pub struct ColumnSink {
    t: Vec<i64>,
    x: Vec<i16>,
    y: Vec<i16>,
    p: Vec<i8>,
    len: usize,
    /// Triggers in stream order.
    pub triggers: Vec<Trigger>,
}

impl ColumnSink {
    /// An empty sink with room for `events` events.
    pub fn with_capacity(events: usize) -> Self {
        Self {
            t: vec![0; events],
            x: vec![0; events],
            y: vec![0; events],
            p: vec![0; events],
            ..Self::default()
        }
    }

    /// Events taken so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no event was taken.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets the events, keeping the room.
    pub fn clear(&mut self) {
        self.len = 0;
        self.triggers.clear();
    }

    /// The event columns `t`, `x`, `y`, `p`.
    pub fn columns(&self) -> (&[i64], &[i16], &[i16], &[i8]) {
        let n = self.len;
        (&self.t[..n], &self.x[..n], &self.y[..n], &self.p[..n])
    }

    /// The events, one by one.
    pub fn events(&self) -> impl Iterator<Item = Event> + '_ {
        let (t, x, y, p) = self.columns();
        (0..self.len).map(|i| Event { t: t[i], x: x[i] as u16, y: y[i] as u16, p: p[i] as u8 })
    }

    fn reserve(&mut self, free: usize) {
        if self.t.len() - self.len < free {
            let len = (self.len + free).max(2 * self.t.len()).max(1 << 12);
            self.t.resize(len, 0);
            self.x.resize(len, 0);
            self.y.resize(len, 0);
            self.p.resize(len, 0);
        }
    }
}

impl EventSink for ColumnSink {
    #[inline]
    fn event(&mut self, t: i64, x: u16, y: u16, p: u8) {
        self.reserve(1);
        let i = self.len;
        (self.t[i], self.x[i], self.y[i], self.p[i]) = (t, x as i16, y as i16, p as i8);
        self.len += 1;
    }

    fn trigger(&mut self, trigger: Trigger) {
        self.triggers.push(trigger);
    }

    #[inline]
    fn slots(&mut self) -> Option<Slots<'_>> {
        // Grows only once full, so that a sink sized for its events never grows.
        self.reserve(1);
        let n = self.len;
        Some(Slots::new(&mut self.t[n..], &mut self.x[n..], &mut self.y[n..], &mut self.p[n..]))
    }

    #[inline]
    fn commit(&mut self, n: usize) {
        assert!(n <= self.t.len() - self.len, "committed more slots than were handed out");
        self.len += n;
    }
}
