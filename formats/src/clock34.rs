//! The 34-bit clock of EVT 2.0 and EVT 2.1: TIME_HIGH words carry time bits 6-33, every
//! event word the low 6 bits. It wraps every 2^34 µs (4.77 hours): a TIME_HIGH that goes
//! back by at least half its 28-bit range counts a wrap; smaller backward steps are kept
//! as encoded.

use crate::encode::EncodeError;

/// Mask of the 28 TIME_HIGH bits.
pub(crate) const TIME_HIGH_MASK: u32 = (1 << 28) - 1;
/// Half the TIME_HIGH range: a backward step this large is a wrap.
const LOOP_THRESHOLD: u32 = 1 << 27;

/// The decoder's view of the clock.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Clock34 {
    known: bool,
    high: u32,
    loops: i64,
    /// `loops << 34 | high << 6`.
    base: i64,
}

impl Clock34 {
    /// Whether a TIME_HIGH has been seen (events before it are dropped).
    #[inline]
    pub(crate) fn known(&self) -> bool {
        self.known
    }

    /// Takes a TIME_HIGH word's 28 bits.
    #[inline]
    pub(crate) fn set_high(&mut self, high: u32) {
        if self.known && self.high >= high + LOOP_THRESHOLD {
            self.loops += 1;
        }
        self.high = high;
        self.base = self.loops << 34 | i64::from(high) << 6;
        self.known = true;
    }

    /// The time of an event word with these low 6 bits.
    #[inline]
    pub(crate) fn time(&self, low: u32) -> i64 {
        self.base | i64::from(low & 0x3F)
    }
}

/// The encoder's view: which TIME_HIGH values bring the decoder to a time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HighSteps {
    /// `t >> 6` of the decoder's current time, once a TIME_HIGH was written.
    at: Option<i64>,
}

impl HighSteps {
    /// Calls `emit` with each TIME_HIGH value (28 bits) needed before an event at `t`:
    /// none while `t` stays within the current 64 µs, intermediate ones on long forward
    /// jumps so that the decoder sees every wrap. Backward steps must stay within one
    /// clock loop.
    pub(crate) fn advance(
        &mut self,
        t: i64,
        format: &'static str,
        mut emit: impl FnMut(u32),
    ) -> Result<(), EncodeError> {
        if t < 0 {
            return Err(EncodeError::NegativeTime { t });
        }
        let high = t >> 6;
        let loop_len = i64::from(TIME_HIGH_MASK) + 1;
        let mut at = self.at.unwrap_or_else(|| {
            emit(0);
            0
        });
        let same_loop = high / loop_len == at / loop_len;
        if high < at && (at - high >= i64::from(LOOP_THRESHOLD) || !same_loop) {
            return Err(EncodeError::TimeNotEncodable {
                t,
                previous: at << 6,
                reason: match format {
                    "EVT2.1" => "EVT2.1 can step back only within one 4.77 h clock loop",
                    _ => "EVT2 can step back only within one 4.77 h clock loop",
                },
            });
        }
        while at != high {
            at = if high > at { high.min(at + i64::from(LOOP_THRESHOLD) - 1) } else { high };
            emit((at & i64::from(TIME_HIGH_MASK)) as u32);
        }
        self.at = Some(high);
        Ok(())
    }
}
