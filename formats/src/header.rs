//! The `% key value` text header that opens Prophesee RAW and DAT files, and the bound on
//! the header of any format.

/// How many bytes of a file's head [`crate::detect`] needs at most: headers longer than
/// this (a `% ` header, an AEDAT 4.0 header) are refused rather than read without bound.
pub const MAX_HEADER_LEN: usize = 64 * 1024;

/// The lines of a `% ` header, without the `% ` prefix and line ending.
///
/// OpenEB's rule: the header is the run of lines at the start of the file that begin with
/// the two bytes `"% "`; an optional `% end` line closes it early.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderLines {
    lines: Vec<String>,
    /// Bytes the header occupies, i.e. where the event data starts.
    pub len: usize,
    /// Whether the header ran to the end of the given bytes without a closing line, so a
    /// longer head of the file might have continued it.
    pub unterminated: bool,
}

impl HeaderLines {
    /// Splits the header off the head of a file. `head` may be the whole file or only its
    /// first bytes.
    pub fn parse(head: &[u8]) -> Self {
        let mut lines = Vec::new();
        let mut pos = 0;
        while head[pos..].starts_with(b"% ") {
            let Some(newline) = head[pos..].iter().position(|&b| b == b'\n') else {
                return Self { lines, len: pos, unterminated: true };
            };
            let line = &head[pos + 2..pos + newline];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            pos += newline + 1;
            let text = String::from_utf8_lossy(line).trim().to_owned();
            if text == "end" {
                break;
            }
            lines.push(text);
        }
        Self { lines, len: pos, unterminated: false }
    }

    /// The value of the first line whose first word is `key` (case-sensitive), trimmed.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.lines.iter().find_map(|line| {
            let (k, v) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            (k == key).then(|| v.trim())
        })
    }

    /// Whether the header has no lines at all.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// All lines, in file order.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lines_until_data() {
        let h = HeaderLines::parse(b"% evt 3.0\r\n% system_ID 48\n\x01\x02% x\n");
        assert_eq!(h.get("evt"), Some("3.0"));
        assert_eq!(h.get("system_ID"), Some("48"));
        assert_eq!(h.len, 26);
        assert!(!h.unterminated);
    }

    #[test]
    fn end_line_closes_the_header() {
        let h = HeaderLines::parse(b"% a 1\n% end\n% b 2\n");
        assert_eq!(h.get("a"), Some("1"));
        assert_eq!(h.get("b"), None);
        assert_eq!(h.len, 12);
    }

    #[test]
    fn percent_without_space_is_data() {
        let h = HeaderLines::parse(b"%x\n");
        assert!(h.is_empty());
        assert_eq!(h.len, 0);
    }

    #[test]
    fn unterminated_line_is_reported() {
        let h = HeaderLines::parse(b"% a 1\n% evt 3");
        assert!(h.unterminated);
        assert_eq!(h.len, 6);
    }
}
