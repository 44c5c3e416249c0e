//! Who may use the Flight service: a bearer token checked on every call, and the rule
//! that keeps an unauthenticated service on loopback.
//!
//! The token is read once at start from `--flight-token-file` (surrounding whitespace
//! trimmed). Clients send it as gRPC metadata `authorization: Bearer <token>`, as
//! `pyarrow.flight.FlightCallOptions(headers=[(b"authorization", b"Bearer ...")])` does;
//! it is compared in constant time. Without a token the service answers anyone who can
//! reach its address, so binding anything but a loopback address without one is refused
//! unless the operator says so explicitly (`--flight-no-token`).

use std::net::SocketAddr;
use std::path::Path;

use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

/// Why the Flight settings were refused at start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthSetupError {
    /// The token file could not be read.
    #[error("cannot read the Flight token file {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The token file holds no token, or one that cannot be sent as a header.
    #[error(
        "the Flight token file {path} holds no usable token (one line of printable ASCII, no spaces)"
    )]
    Unusable {
        /// The file.
        path: std::path::PathBuf,
    },
    /// A non-loopback address without a token.
    #[error(
        "refusing to serve Flight on {addr}, beyond loopback, without a token: give \
         --flight-token-file FILE (or --flight-no-token to serve anyone who can reach it)"
    )]
    OpenToTheNetwork {
        /// The address.
        addr: SocketAddr,
    },
}

/// The bearer token every call must carry, if any.
#[derive(Clone)]
pub struct Token(Option<Vec<u8>>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself, even in a debug log.
        f.write_str(if self.0.is_some() { "Token(set)" } else { "Token(none)" })
    }
}

impl Token {
    /// No token: every call is served.
    pub fn none() -> Self {
        Token(None)
    }

    /// The token in `path`.
    pub fn read(path: &Path) -> Result<Self, AuthSetupError> {
        let text = std::fs::read(path)
            .map_err(|source| AuthSetupError::Read { path: path.to_owned(), source })?;
        Self::parse(&text).ok_or_else(|| AuthSetupError::Unusable { path: path.to_owned() })
    }

    fn parse(text: &[u8]) -> Option<Self> {
        let token = text.trim_ascii();
        let printable = token.iter().all(|b| b.is_ascii_graphic());
        (!token.is_empty() && printable).then(|| Token(Some(token.to_vec())))
    }

    /// Whether a token is required.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// Checks the `authorization` header of a call.
    pub fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        self.check_metadata(request.metadata())
    }

    /// Checks the `authorization` header among a call's metadata.
    pub fn check_metadata(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let Some(expected) = &self.0 else { return Ok(()) };
        let given = metadata.get("authorization").map(|v| v.as_bytes());
        let Some(given) = given else {
            return Err(Status::unauthenticated("evshm:unauthenticated: no authorization header"));
        };
        let bearer = given.strip_prefix(b"Bearer ").unwrap_or(b"");
        if !constant_time_eq(bearer, expected) {
            return Err(Status::unauthenticated("evshm:unauthenticated: wrong token"));
        }
        Ok(())
    }

    /// Refuses to serve `addr` beyond loopback without a token, unless `open` says so.
    pub fn allows_binding(&self, addr: SocketAddr, open: bool) -> Result<(), AuthSetupError> {
        if self.is_set() || open || addr.ip().is_loopback() {
            Ok(())
        } else {
            Err(AuthSetupError::OpenToTheNetwork { addr })
        }
    }
}

/// Compares in time that depends only on the lengths, not on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (x, y) in a.iter().zip(b.iter().cycle()) {
        diff |= x ^ y;
    }
    diff == 0 && !b.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(header: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(value) = header {
            request.metadata_mut().insert("authorization", value.parse().unwrap());
        }
        request
    }

    #[test]
    fn tokens_are_checked_on_every_call() {
        let token = Token::parse(b"  s3cret\n").unwrap();
        assert!(token.check(&call(Some("Bearer s3cret"))).is_ok());
        for bad in [
            None,
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("s3cret"),
            Some("Basic s3cret"),
        ] {
            let refused = token.check(&call(bad)).unwrap_err();
            assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{bad:?}");
        }
        assert!(Token::none().check(&call(None)).is_ok());
        assert!(Token::parse(b" \n").is_none());
        assert!(Token::parse(b"two words").is_none());
        assert_eq!(format!("{token:?}"), "Token(set)");
    }

    #[test]
    fn beyond_loopback_only_with_a_token_or_when_told() {
        let (local, wide) =
            ("127.0.0.1:1".parse().unwrap(), "0.0.0.0:1".parse::<SocketAddr>().unwrap());
        assert!(Token::none().allows_binding(local, false).is_ok());
        assert!(Token::none().allows_binding("[::1]:1".parse().unwrap(), false).is_ok());
        assert!(Token::none().allows_binding(wide, false).is_err());
        assert!(Token::none().allows_binding(wide, true).is_ok());
        assert!(Token::parse(b"t").unwrap().allows_binding(wide, false).is_ok());
    }
}
