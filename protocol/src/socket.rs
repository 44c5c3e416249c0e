//! Where the control socket is when no path is given: one chain for every program.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_socket_path_chain() {
        // One test touches these variables, so no other test races with it.
        // SAFETY: no other thread of this test binary reads or writes the environment.
        unsafe {
            std::env::set_var("EVSHM_SOCKET", "/x/s.sock");
            assert_eq!(default_socket_path(), PathBuf::from("/x/s.sock"));
            std::env::remove_var("EVSHM_SOCKET");
            std::env::set_var("XDG_RUNTIME_DIR", "/run/user/7");
            assert_eq!(default_socket_path(), PathBuf::from("/run/user/7/evshm.sock"));
            std::env::remove_var("XDG_RUNTIME_DIR");
        }
        let uid = rustix::process::getuid().as_raw();
        assert_eq!(default_socket_path(), PathBuf::from(format!("/tmp/evshm-{uid}.sock")));
    }
}
