//! What a Flight client sends: the descriptor of `GetFlightInfo` (which recording, which
//! window) and the ticket of `DoGet` (which rows of which chunk of which file version).
//!
//! Both are small JSON objects, parsed with a length cap; a ticket is opaque to clients,
//! who only hand back what `GetFlightInfo` gave them. A ticket names the file version it
//! was made for, so a `DoGet` after the file changed fails cleanly rather than serving
//! rows of another version. Tickets are not secret and not signed: a forged one can only
//! ask for what the token's holder could ask for through `GetFlightInfo` anyway, and every
//! field is checked again (roots, version, chunk, rows).

use evshm_formats::Geometry;
use evshm_protocol::{Table, Window};
use serde::{Deserialize, Serialize};

/// Most bytes of a descriptor's command or a ticket.
pub const MAX_TICKET_LEN: usize = 16 * 1024;

/// The format tag of every ticket, to tell evshm's tickets (and their version) apart.
const TICKET_TAG: u32 = 1;

/// Why a descriptor or ticket was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TicketError {
    /// Longer than [`MAX_TICKET_LEN`].
    #[error("{what} of {len} bytes is longer than {MAX_TICKET_LEN}")]
    TooLong {
        /// A ticket or a descriptor.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// Not what evshmd hands out or accepts.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// A ticket or a descriptor.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
}

/// What `GetFlightInfo` is asked for: a recording (a path descriptor, its segments joined
/// by `/`, or a command with the fields below), optionally a window, a table, a geometry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// The recording, as for a local open.
    pub path: String,
    /// Which table (events by default).
    #[serde(default)]
    pub table: Table,
    /// `[t_start, t_end)` in microseconds, or the whole recording.
    #[serde(default)]
    pub window: Option<Window>,
    /// Sensor width for a file that states none (with `height`).
    #[serde(default)]
    pub width: Option<u32>,
    /// Sensor height for a file that states none (with `width`).
    #[serde(default)]
    pub height: Option<u32>,
}

impl Query {
    /// A descriptor's command (JSON), or the path of a path descriptor.
    pub fn parse(cmd: &[u8], path: &[String]) -> Result<Query, TicketError> {
        const WHAT: &str = "descriptor";
        if !path.is_empty() {
            let joined = path.join("/");
            if joined.len() > MAX_TICKET_LEN {
                return Err(TicketError::TooLong { what: WHAT, len: joined.len() });
            }
            let query = Query {
                path: joined,
                table: Table::Events,
                window: None,
                width: None,
                height: None,
            };
            return Ok(query);
        }
        if cmd.len() > MAX_TICKET_LEN {
            return Err(TicketError::TooLong { what: WHAT, len: cmd.len() });
        }
        serde_json::from_slice(cmd)
            .map_err(|e| TicketError::Malformed { what: WHAT, detail: e.to_string() })
    }
}

/// What a `DoGet` fetches: rows `rows[0]..rows[1]` of table `table` of chunk `chunk` of
/// the recording at `path`, decoded with `geometry`, at file version `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkTicket {
    /// The format tag ([`TICKET_TAG`]).
    pub evshm: u32,
    /// The recording, as the client named it.
    pub path: String,
    /// Which table.
    pub table: Table,
    /// The geometry the query gave, if any: `[width, height]`.
    pub geometry: Option<[u32; 2]>,
    /// The chunk, from 0.
    pub chunk: usize,
    /// The rows of the chunk, `[first, end)`.
    pub rows: [u64; 2],
    /// The file version ([`FileIdentity::token`](crate::file::FileIdentity::token)).
    pub version: String,
    /// More chunks to send after it in the same stream, each with its rows: the ticket of
    /// a whole answer in one `DoGet` (`GetFlightInfo`'s `app_metadata`, `whole`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub then: Vec<(usize, [u64; 2])>,
}

impl ChunkTicket {
    /// A ticket for rows `rows` of a chunk.
    pub fn new(
        path: &str,
        table: Table,
        geometry: Option<Geometry>,
        chunk: usize,
        rows: [u64; 2],
        version: String,
    ) -> Self {
        let geometry = geometry.map(|g| [g.width, g.height]);
        let path = path.to_owned();
        Self { evshm: TICKET_TAG, path, table, geometry, chunk, rows, version, then: Vec::new() }
    }

    /// The geometry, as the open pipeline takes it.
    pub fn geometry(&self) -> Option<Geometry> {
        self.geometry.map(|[width, height]| Geometry { width, height })
    }

    /// The ticket's bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a ticket's bytes, refusing anything evshmd did not make (or cannot have).
    pub fn decode(bytes: &[u8]) -> Result<Self, TicketError> {
        const WHAT: &str = "ticket";
        if bytes.len() > MAX_TICKET_LEN {
            return Err(TicketError::TooLong { what: WHAT, len: bytes.len() });
        }
        let malformed = |detail: String| TicketError::Malformed { what: WHAT, detail };
        let ticket: ChunkTicket =
            serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        if ticket.evshm != TICKET_TAG {
            return Err(malformed(format!(
                "ticket format {} (this evshmd makes {TICKET_TAG})",
                ticket.evshm
            )));
        }
        let rows = std::iter::once(ticket.rows).chain(ticket.then.iter().map(|(_, rows)| *rows));
        if let Some([start, end]) = rows.into_iter().find(|[start, end]| start > end) {
            return Err(malformed(format!("rows {start}..{end} run backwards")));
        }
        Ok(ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_round_trip_and_hostile_ones_are_refused() {
        let geometry = Some(Geometry { width: 640, height: 480 });
        let ticket = ChunkTicket::new("a/b.raw", Table::Triggers, geometry, 3, [5, 9], "v".into());
        let decoded = ChunkTicket::decode(&ticket.encode()).unwrap();
        assert_eq!(decoded, ticket);
        assert_eq!(decoded.geometry(), geometry);
        for bad in [&b""[..], b"\xff\xfe", b"{}", b"[1,2]", b"{\"evshm\":1}"] {
            assert!(matches!(ChunkTicket::decode(bad), Err(TicketError::Malformed { .. })));
        }
        let mut other = ticket.clone();
        other.evshm = 7;
        assert!(ChunkTicket::decode(&other.encode()).is_err());
        other = ticket.clone();
        other.rows = [9, 5];
        assert!(ChunkTicket::decode(&other.encode()).is_err());
        other = ticket.clone();
        other.then = vec![(4, [0, 10]), (5, [0, 3])];
        assert_eq!(ChunkTicket::decode(&other.encode()).unwrap().then, other.then);
        other.then.push((6, [3, 0]));
        assert!(ChunkTicket::decode(&other.encode()).is_err());
        let huge = vec![b' '; MAX_TICKET_LEN + 1];
        assert!(matches!(ChunkTicket::decode(&huge), Err(TicketError::TooLong { .. })));
    }

    #[test]
    fn queries_by_path_or_command() {
        let by_path = Query::parse(b"", &["day1".into(), "cam0.raw".into()]).unwrap();
        assert_eq!(by_path.path, "day1/cam0.raw");
        assert_eq!(by_path.window, None);
        let cmd = br#"{"path":"a.raw","window":[10,20],"table":"triggers"}"#;
        let by_cmd = Query::parse(cmd, &[]).unwrap();
        assert_eq!(by_cmd.window, Some(Window { start: 10, end: 20 }));
        assert_eq!(by_cmd.table, Table::Triggers);
        assert!(Query::parse(br#"{"path":"a.raw","bogus":1}"#, &[]).is_err());
        assert!(Query::parse(b"not json", &[]).is_err());
        assert!(Query::parse(&vec![b'x'; MAX_TICKET_LEN + 1], &[]).is_err());
    }
}
