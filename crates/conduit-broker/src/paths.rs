//! Where the broker listens.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The broker's socket: `$CONDUIT_BROKER` if set, else
/// `$XDG_RUNTIME_DIR/conduit/broker.sock`, else
/// `/tmp/conduit-$UID/broker.sock`.
pub fn socket_path() -> PathBuf {
    if let Some(p) = std::env::var_os("CONDUIT_BROKER") {
        return PathBuf::from(p);
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        return Path::new(&dir).join("conduit").join("broker.sock");
    }
    let uid = rustix::process::getuid().as_raw();
    PathBuf::from(format!("/tmp/conduit-{uid}/broker.sock"))
}

/// The lock file that makes starting a broker race-free.
pub fn lock_path(socket: &Path) -> PathBuf {
    let mut p = socket.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Create the socket's directory with `mode` (0700 unless configured for a
/// group) if it does not exist.
pub fn ensure_dir(socket: &Path, mode: u32) -> io::Result<()> {
    let Some(dir) = socket.parent() else { return Ok(()) };
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(mode).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}
