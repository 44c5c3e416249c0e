//! Where the control socket is when no path is given: one chain for every program
//! (`protocol/tests/fixtures.rs` checks it against the chain the Python client follows).

use std::path::PathBuf;

/// The socket path every evshm program uses when none is given: `$EVSHM_SOCKET`, else
/// `$XDG_RUNTIME_DIR/evshm.sock`, else `/tmp/evshm-$UID.sock`.
pub fn default_socket_path() -> PathBuf {
    if let Some(path) = std::env::var_os("EVSHM_SOCKET").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        return PathBuf::from(dir).join("evshm.sock");
    }
    PathBuf::from(format!("/tmp/evshm-{}.sock", rustix::process::getuid().as_raw()))
}
