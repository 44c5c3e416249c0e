//! The `#` text header of jAER's AEDAT 2.0 and libcaer's AEDAT 3.1 files: lines that start
//! with `#`, each ended by `\r\n` (or `\n`), the first of them `#!AER-DAT2.0` or
//! `#!AER-DAT3.1`. AEDAT 3.1 closes it with `#!END-HEADER`; an AEDAT 2.0 header ends at
//! `#End Of ASCII Header`, which newer jAER versions write last, else at the first line that
//! does not start with `#` (jAER's and tonic's rule: a first record whose first byte is `#`
//! is then misread, by them too).

/// The lines of a `#` header, without the `#` and the line ending.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HashHeader {
    lines: Vec<String>,
    /// Bytes the header occupies: where the event data starts.
    pub(crate) len: usize,
    /// Whether `#!END-HEADER` closed it.
    pub(crate) closed: bool,
    /// Whether the head ended inside a line, so a longer head might continue it.
    pub(crate) unterminated: bool,
}

impl HashHeader {
    /// Splits the header off the head of a file.
    pub(crate) fn parse(head: &[u8]) -> Self {
        let mut header = Self::default();
        while head[header.len..].starts_with(b"#") {
            let rest = &head[header.len..];
            let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
                header.unterminated = true;
                break;
            };
            let line = &rest[1..newline];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            header.len += newline + 1;
            let text = String::from_utf8_lossy(line).trim().to_owned();
            // libcaer's closing line, and the one newer jAER versions write.
            if text == "!END-HEADER" || text.eq_ignore_ascii_case("End Of ASCII Header") {
                header.closed = true;
                break;
            }
            header.lines.push(text);
        }
        header
    }

    /// The value after `key` (and a `:` or white space) of the first line that starts
    /// with it, ignoring case and white space before it.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.lines.iter().find_map(|line| {
            let line = line.trim_start();
            let prefix = line.get(..key.len())?;
            if !prefix.eq_ignore_ascii_case(key) {
                return None;
            }
            let rest = &line[key.len()..];
            let value =
                rest.strip_prefix(':').or_else(|| rest.strip_prefix(char::is_whitespace))?;
            Some(value.trim())
        })
    }

    /// All lines, in file order.
    pub(crate) fn lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_until_data_or_end_header() {
        let h = HashHeader::parse(b"#!AER-DAT2.0\r\n# AEChip: a.b.DVS128\r\n\x00\x01");
        assert_eq!(h.lines().next(), Some("!AER-DAT2.0"));
        assert_eq!(h.get("AEChip"), Some("a.b.DVS128"));
        assert_eq!((h.len, h.closed, h.unterminated), (36, false, false));
        let h = HashHeader::parse(b"#!AER-DAT3.1\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n#x");
        assert_eq!(h.get("source 1"), Some("DVS128"));
        assert_eq!((h.len, h.closed), (47, true));
        assert!(HashHeader::parse(b"#!AER-DAT3.1\r\n#Sou").unterminated);
        // jAER's closing line: a first record that starts with `#` is data.
        let h = HashHeader::parse(b"#!AER-DAT2.0\r\n#End Of ASCII Header\r\n#\x00\x00\n");
        assert_eq!((h.len, h.closed), (36, true));
    }
}
