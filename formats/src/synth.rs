//! Synthetic event streams shaped like a real camera's output, for samples, tests and
//! benchmarks: a few moving objects produce runs of neighbouring pixels on one row at one
//! timestamp (what EVT3 vectors compress), both polarities, and an event rate that swells
//! and ebbs once a second. Deterministic for a given seed.

use std::io::Write;

use crate::encode::EncodeError;
use crate::evt3::Evt3Encoder;
use crate::geometry::Geometry;
use crate::sink::Event;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct SynthConfig {
    /// Sensor size; every event lies inside it.
    pub geometry: Geometry,
    /// How many events.
    pub events: u64,
    /// Mean event rate in events per second.
    pub rate: f64,
    /// Timestamp of the first event, in microseconds.
    pub t0: i64,
    /// Seed of the pseudo-random generator.
    pub seed: u64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            geometry: Geometry { width: 1280, height: 720 },
            events: 1_000_000,
            rate: 20e6,
            t0: 0,
            seed: 1,
        }
    }
}

impl SynthConfig {
    /// `events` events, every other setting at its default (a 1280x720 sensor).
    pub fn events(events: u64) -> Self {
        Self { events, ..Self::default() }
    }
}

/// Writes the events of `config` to `out` as an EVT3 recording, and returns `out`.
pub fn write_evt3<W: Write>(config: SynthConfig, out: W) -> Result<W, EncodeError> {
    let mut encoder = Evt3Encoder::new(out, config.geometry)?;
    for event in Synth::new(config) {
        encoder.push(&event)?;
    }
    encoder.finish()
}

/// An iterator over the events of a [`SynthConfig`].
#[derive(Debug, Clone)]
pub struct Synth {
    config: SynthConfig,
    rng: SplitMix64,
    emitted: u64,
    time: f64,
    objects: [Object; 4],
    run: Run,
}

#[derive(Debug, Clone, Copy, Default)]
struct Object {
    x: f64,
    y: f64,
    vx: f64,
    vy: f64,
    radius: f64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Run {
    t: i64,
    x: u32,
    y: u32,
    p: u8,
    left: u32,
}

impl Synth {
    /// Starts generating.
    pub fn new(config: SynthConfig) -> Self {
        let mut rng = SplitMix64(config.seed);
        let (w, h) = (f64::from(config.geometry.width), f64::from(config.geometry.height));
        let objects = std::array::from_fn(|_| Object {
            x: rng.unit() * w,
            y: rng.unit() * h,
            vx: (rng.unit() - 0.5) * w * 2e-6,
            vy: (rng.unit() - 0.5) * h * 2e-6,
            radius: 4.0 + rng.unit() * w / 16.0,
        });
        Self { config, rng, emitted: 0, time: config.t0 as f64, objects, run: Run::default() }
    }

    fn start_run(&mut self) {
        let g = self.config.geometry;
        // Run lengths as in real EVT3 data: half are single pixels, few exceed eight.
        let len = 1 + (self.rng.next() | 1 << 15).trailing_zeros();
        let seconds = (self.time - self.config.t0 as f64) * 1e-6;
        let rate = self.config.rate * (1.0 + 0.8 * (seconds * std::f64::consts::TAU).sin());
        self.time += self.rng.unit() * 2.0 * f64::from(len) * 1e6 / rate.max(1.0);
        let k = (self.rng.next() % self.objects.len() as u64) as usize;
        let o = &mut self.objects[k];
        let dt = 1e-3;
        o.x = (o.x + o.vx * dt * 1e6).rem_euclid(f64::from(g.width));
        o.y = (o.y + o.vy * dt * 1e6).rem_euclid(f64::from(g.height));
        let (dx, dy) = (self.rng.unit() - 0.5, self.rng.unit() - 0.5);
        let x = (o.x + dx * 2.0 * o.radius).clamp(0.0, f64::from(g.width - 1));
        let y = (o.y + dy * 2.0 * o.radius).clamp(0.0, f64::from(g.height - 1));
        let p = u8::from(dx > 0.0);
        self.run = Run { t: self.time as i64, x: x as u32, y: y as u32, p, left: len };
    }
}

impl Iterator for Synth {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        if self.emitted == self.config.events {
            return None;
        }
        while self.run.left == 0 || self.run.x >= self.config.geometry.width {
            self.start_run();
        }
        let run = &mut self.run;
        let event = Event { t: run.t, x: run.x as u16, y: run.y as u16, p: run.p };
        run.left -= 1;
        // Mostly neighbours, sometimes a gap, as edges crossing a row look.
        run.x += 1 + u32::from(self.rng.next().is_multiple_of(8));
        self.emitted += 1;
        Some(event)
    }
}

/// Steele, Lea and Flood's SplitMix64: tiny, fast and good enough for test data.
#[derive(Debug, Clone, Copy)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_inside_the_sensor_and_time_never_goes_back() {
        let config = SynthConfig { events: 50_000, t0: 1000, ..SynthConfig::default() };
        let events: Vec<Event> = Synth::new(config).collect();
        assert_eq!(events.len(), 50_000);
        assert!(events.iter().all(|e| u32::from(e.x) < 1280 && u32::from(e.y) < 720));
        assert!(events.windows(2).all(|w| w[0].t <= w[1].t));
        assert!(events[0].t >= 1000);
        assert!(events.iter().any(|e| e.p == 0) && events.iter().any(|e| e.p == 1));
        let same_deterministic: Vec<Event> = Synth::new(config).collect();
        assert_eq!(events, same_deterministic);
    }
}
