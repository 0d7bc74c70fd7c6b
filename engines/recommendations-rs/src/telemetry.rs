//! What `variants.telemetry` records for a process, for one without a garbage collector: its
//! role (`<dir>/roles/<pid>`, read by the harness's sampler and profiler) and the statement
//! that it has no collector (`<dir>/no-collector/<pid>`), so GC telemetry reports "no
//! collector" for it rather than an empty, silent series.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub const ENV_DIR: &str = "ARCHLAB_TELEMETRY_DIR";

/// Declares the role; a no-op when the harness did not ask for telemetry. Returns the folder.
pub fn declare(role: &str) -> io::Result<Option<PathBuf>> {
    let folder = match std::env::var_os(ENV_DIR) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => return Ok(None),
    };
    write_atomically(&folder.join("roles"), role)?;
    write_atomically(&folder.join("no-collector"), role)?;
    Ok(Some(folder))
}

/// `<folder>/<pid>` holding `role` and a newline, renamed into place so readers never see
/// half a file.
fn write_atomically(folder: &Path, role: &str) -> io::Result<()> {
    fs::create_dir_all(folder)?;
    let pid = std::process::id();
    let tmp = folder.join(format!(".{}.tmp", pid));
    fs::write(&tmp, format!("{}\n", role))?;
    fs::rename(&tmp, folder.join(pid.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_role_files() {
        let dir = std::env::temp_dir().join(format!("rs-telemetry-test-{}", std::process::id()));
        let pid = std::process::id().to_string();
        write_atomically(&dir.join("roles"), "recommendations").unwrap();
        let text = fs::read_to_string(dir.join("roles").join(&pid)).unwrap();
        assert_eq!(text, "recommendations\n");
        assert!(!dir.join("roles").join(format!(".{}.tmp", pid)).exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
