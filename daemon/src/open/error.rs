//! Why an open failed, in the daemon's own terms: the protocol edge (`wire`) turns each
//! into a stable error code and a message.

use std::ops::Range;
use std::sync::Arc;

use evshm_protocol::Window;

use crate::ingest::IngestError;
use crate::roots::PathError;

/// Why a recording, or a window of it, could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The path names no file that may be served.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The window ends before it starts.
    #[error("window [{}, {}) ends before it starts", .0.start, .0.end)]
    BadWindow(Window),
    /// Indexing or decoding the recording failed (shared by every request that waited
    /// for the same decode).
    #[error("{name}: {error}")]
    Ingest {
        /// The recording's name, as the client gave it.
        name: String,
        /// What failed.
        error: Arc<IngestError>,
    },
    /// The chunks asked for need more memory than the whole budget.
    #[error("{name}: {}", too_big(*.window, .chunks, *.needed, *.limit))]
    OverBudget {
        /// The recording's name, as the client gave it.
        name: String,
        /// The window asked for, if any.
        window: Option<Window>,
        /// The chunks it needs.
        chunks: Range<usize>,
        /// Bytes the chunks' extents need.
        needed: u64,
        /// The budget.
        limit: u64,
    },
    /// A resident chunk's table could not be read to find a window's rows (its arena was
    /// truncated by a process of the daemon's own uid).
    #[error("cannot read arena {arena}: {source}")]
    ReadArena {
        /// The arena's name.
        arena: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What needs more than the budget, and what to do: a whole recording can be read by
/// windows; a window cannot be cut further, so the budget (or the chunks) must change.
fn too_big(window: Option<Window>, chunks: &Range<usize>, needed: u64, limit: u64) -> String {
    let (needed_text, limit_text, enough) = (bytes(needed), bytes(limit), budget_flag(needed));
    let Some(window) = window else {
        return format!(
            "the whole recording needs {needed_text} decoded ({} chunks), more than the \
             memory budget of {limit_text}; open it by time windows (each needs only the \
             chunks it touches), or raise --memory-budget to at least {enough}",
            chunks.len()
        );
    };
    let span = match chunks.len() {
        1 => format!("lies in chunk {}", chunks.start),
        2 => format!(
            "spans chunks {} and {} (it crosses the boundary between them, so both must be \
             resident at once)",
            chunks.start,
            chunks.start + 1
        ),
        n => format!(
            "spans chunks {} to {} ({n} chunks, all resident at once)",
            chunks.start,
            chunks.end - 1
        ),
    };
    format!(
        "the window [{}, {}) {span}, whose chunks need {needed_text} decoded, more than \
         the memory budget of {limit_text}: raise --memory-budget to at least {enough}, or \
         make chunks smaller (--chunk-events, --chunk-span)",
        window.start, window.end
    )
}

/// A size for people: bytes, KiB or MiB.
fn bytes(n: u64) -> String {
    match n {
        0..10_240 => format!("{n} bytes"),
        10_240..10_485_760 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

/// The smallest `--memory-budget` value, in whole KiB or MiB, that holds `n` bytes.
fn budget_flag(n: u64) -> String {
    if n < 10 << 20 {
        format!("{}K", n.div_ceil(1 << 10))
    } else {
        format!("{}M", n.div_ceil(1 << 20))
    }
}

impl OpenError {
    /// An indexing or decoding failure of the recording the client calls `name`.
    pub fn ingest(name: &str, error: impl Into<Arc<IngestError>>) -> Self {
        OpenError::Ingest { name: name.to_owned(), error: error.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn over(window: Option<Window>, chunks: Range<usize>) -> String {
        let error = OpenError::OverBudget {
            name: "a.raw".into(),
            window,
            chunks,
            needed: 1 << 20 | 1,
            limit: 600 << 10,
        };
        error.to_string()
    }

    #[test]
    fn over_budget_says_what_the_open_needs_and_what_to_do() {
        let whole = over(None, 0..5);
        assert!(whole.starts_with("a.raw: the whole recording needs 1024.0 KiB decoded (5 chunks), more than the memory budget of 600.0 KiB; open it by time windows"), "{whole}");
        assert!(whole.ends_with("raise --memory-budget to at least 1025K"), "{whole}");
        let window = Some(Window { start: 10, end: 20 });
        let two = over(window, 3..5);
        assert!(two.starts_with("a.raw: the window [10, 20) spans chunks 3 and 4 (it crosses the boundary between them"), "{two}");
        assert!(
            two.contains("raise --memory-budget to at least 1025K, or make chunks smaller"),
            "{two}"
        );
        assert!(!two.contains("time windows"), "a window is no advice for a window: {two}");
        assert!(
            over(window, 3..4).starts_with("a.raw: the window [10, 20) lies in chunk 3, whose")
        );
        assert!(over(window, 3..6).contains("spans chunks 3 to 5 (3 chunks"));
        assert_eq!(
            (bytes(10_239), bytes(10_240), budget_flag(20 << 20)),
            ("10239 bytes".into(), "10.0 KiB".into(), "20M".into())
        );
    }
}
