//! Requests: what a client may ask, and how the daemon parses a request line.

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, ErrorReply};

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Request {
    /// Agrees on the protocol version; must come first on a connection.
    Hello {
        /// The client's [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION).
        version: u32,
        /// Free text naming the client, for the daemon's log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
    },
    /// Lists the recordings under the served roots.
    List,
    /// Opens a recording, decoding what is not resident yet.
    Open {
        /// Path relative to a served root (or absolute, inside one).
        path: String,
        /// Which of the recording's tables.
        #[serde(default)]
        table: Table,
        /// Sensor width to use when the file states no geometry.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        width: Option<u32>,
        /// Sensor height to use when the file states no geometry.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        height: Option<u32>,
        /// Only the rows of this time window; the whole recording when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        window: Option<Window>,
    },
    /// Ends a lease taken by `open`.
    Release {
        /// The lease id from [`OpenReply::lease`](crate::OpenReply::lease).
        lease: u64,
    },
    /// Asks for the daemon's counters.
    Stats,
    /// Drops every resident chunk no client holds, now: their extents are freed and
    /// their memory returned (leased chunks stay).
    Evict,
}

/// A time window `[start, end)` in microseconds of sensor time, `[start, end]` on the
/// wire.
///
/// Its rows are those from the first row with `t >= start` up to, not including, the
/// first row with `t >= end`: one contiguous run of rows. For time that never steps
/// back these are exactly the rows with `start <= t < end`; where it steps back slightly
/// (real EVT3 recordings do), a row is in the window of the running maximum of `t` at
/// that row, so back-to-back windows neither lose nor repeat a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "[i64; 2]", into = "[i64; 2]")]
pub struct Window {
    /// First microsecond of the window.
    pub start: i64,
    /// First microsecond after the window.
    pub end: i64,
}

impl From<[i64; 2]> for Window {
    fn from([start, end]: [i64; 2]) -> Self {
        Window { start, end }
    }
}

impl From<Window> for [i64; 2] {
    fn from(window: Window) -> Self {
        [window.start, window.end]
    }
}

/// The tables a recording is decoded into, each its own Arrow IPC stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// CD events: `t int64, x int16, y int16, p int8`.
    #[default]
    Events,
    /// External triggers: `t int64, id int16, p int8`.
    Triggers,
}

impl Request {
    /// The `op` name of every request, to tell an unknown op from a malformed known one.
    pub const OPS: [&str; 6] = ["hello", "list", "open", "release", "stats", "evict"];

    /// Parses one request line (without its newline), classifying failures the way the
    /// protocol reports them.
    pub fn parse(line: &[u8]) -> Result<Request, ErrorReply> {
        let value: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
            ErrorReply::new(ErrorCode::BadRequest, format!("request is not valid JSON: {e}"))
        })?;
        let Some(op) = value.get("op").and_then(serde_json::Value::as_str) else {
            return Err(ErrorReply::new(
                ErrorCode::BadRequest,
                "request must be a JSON object with a string field \"op\"",
            ));
        };
        if !Self::OPS.contains(&op) {
            return Err(ErrorReply::new(
                ErrorCode::UnknownOp,
                format!("unknown op {op:?}; this daemon knows {}", Self::OPS.join(", ")),
            ));
        }
        let op = op.to_owned();
        serde_json::from_value(value).map_err(|e| {
            ErrorReply::new(ErrorCode::BadRequest, format!("malformed {op} request: {e}"))
        })
    }

    /// The request as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("requests always serialize");
        line.push(b'\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_errors_are_classified() {
        let open = Request::Open {
            path: "a/b.raw".into(),
            table: Table::Events,
            width: None,
            height: None,
            window: None,
        };
        let line = open.to_line();
        assert_eq!(line, b"{\"op\":\"open\",\"path\":\"a/b.raw\",\"table\":\"events\"}\n");
        let minimal = Request::parse(b"{\"op\":\"open\",\"path\":\"a/b.raw\"}").unwrap();
        assert_eq!(minimal, open, "the table defaults to events");
        assert_eq!(Request::parse(&line[..line.len() - 1]).unwrap(), open);
        let code = |line: &[u8]| Request::parse(line).unwrap_err().code;
        assert_eq!(code(b"{nope"), ErrorCode::BadRequest);
        assert_eq!(code(b"[1]"), ErrorCode::BadRequest);
        assert_eq!(code(b"{\"op\":\"fly\"}"), ErrorCode::UnknownOp);
        assert_eq!(Request::parse(br#"{"op":"evict"}"#).unwrap(), Request::Evict);
        assert_eq!(code(b"{\"op\":\"open\"}"), ErrorCode::BadRequest);
        assert_eq!(code(b"{\"op\":\"release\",\"lease\":\"x\"}"), ErrorCode::BadRequest);
        assert_eq!(
            code(b"{\"op\":\"open\",\"path\":\"a\",\"table\":\"x\"}"),
            ErrorCode::BadRequest
        );
        assert_eq!(code(br#"{"op":"open","path":"a","window":[1]}"#), ErrorCode::BadRequest);
        let windowed = Request::parse(br#"{"op":"open","path":"a","window":[-5,7]}"#).unwrap();
        let Request::Open { window: Some(window), .. } = &windowed else { panic!("{windowed:?}") };
        assert_eq!(*window, Window { start: -5, end: 7 });
        assert!(String::from_utf8(windowed.to_line()).unwrap().contains(r#""window":[-5,7]"#));
    }
}
