//! The directories evshmd serves, and the confinement of request paths to them.

use std::path::{Component, Path, PathBuf};

/// Most files `list` walks over, so a huge tree cannot stall the daemon.
const MAX_LISTED_FILES: usize = 100_000;

/// The served roots, canonical, in command-line order.
#[derive(Debug, Clone)]
pub struct Roots {
    dirs: Vec<PathBuf>,
}

/// Why a request path names no file that may be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path is empty, contains `..` or a NUL byte.
    #[error("path {path:?} {why}")]
    Malformed {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The path, or the file a link in it leads to, lies outside every root.
    #[error("{path} {why}")]
    OutsideRoots {
        /// The path as given.
        path: String,
        /// Where it leads.
        why: String,
    },
    /// No root holds a regular file at the path.
    #[error("{why}")]
    NotFound {
        /// The path as given.
        path: String,
        /// What was found instead, naming the path.
        why: String,
    },
}

/// A request path resolved to a file inside a root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The file, with every symbolic link resolved.
    pub file: PathBuf,
    /// The recording's name: its path relative to its root, `/`-separated, as clients
    /// name it.
    pub name: String,
}

impl Roots {
    /// Checks that every root is a directory and canonicalises it.
    pub fn new(dirs: &[PathBuf]) -> std::io::Result<Roots> {
        let mut canonical = Vec::new();
        for dir in dirs {
            let resolved = dir.canonicalize().map_err(|e| {
                std::io::Error::new(e.kind(), format!("root {}: {e}", dir.display()))
            })?;
            if !resolved.is_dir() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    format!("root {} is not a directory", dir.display()),
                ));
            }
            canonical.push(resolved);
        }
        Ok(Roots { dirs: canonical })
    }

    /// The roots.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Resolves a path from a request: relative to the first root that holds it, or
    /// absolute inside a root. `..` is refused outright, and the file, symbolic links
    /// resolved, must lie inside a root.
    pub fn resolve(&self, request: &str) -> Result<Resolved, PathError> {
        let bad = |why| PathError::Malformed { path: request.to_owned(), why };
        if request.is_empty() {
            return Err(bad("is empty"));
        }
        if request.contains('\0') {
            return Err(bad("contains a NUL byte"));
        }
        let path = Path::new(request);
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(bad("contains `..`"));
        }
        let relative = if path.is_absolute() {
            self.relative_of_absolute(path).ok_or_else(|| PathError::OutsideRoots {
                path: request.to_owned(),
                why: format!("lies outside the served roots {}", self.describe()),
            })?
        } else {
            path.components().filter(|c| matches!(c, Component::Normal(_))).collect()
        };
        let shown = relative.to_string_lossy().into_owned();
        let not_found = |why| PathError::NotFound { path: shown.clone(), why };
        for root in &self.dirs {
            let candidate = root.join(&relative);
            let file = match candidate.canonicalize() {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(not_found(format!("cannot open {shown}: {e}"))),
            };
            if !self.dirs.iter().any(|r| file.starts_with(r)) {
                return Err(PathError::OutsideRoots {
                    path: shown,
                    why: format!("is a link to {}, outside the served roots", file.display()),
                });
            }
            if !file.is_file() {
                return Err(not_found(format!("{shown} is not a regular file")));
            }
            return Ok(Resolved { file, name: shown });
        }
        Err(not_found(format!("no file {shown} under the served roots {}", self.describe())))
    }

    fn relative_of_absolute(&self, path: &Path) -> Option<PathBuf> {
        let within = |p: &Path| {
            self.dirs.iter().find_map(|root| p.strip_prefix(root).ok().map(Path::to_path_buf))
        };
        within(path).or_else(|| within(&path.canonicalize().ok()?))
    }

    fn describe(&self) -> String {
        let dirs: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
        dirs.join(", ")
    }

    /// Every regular file under the roots whose name is UTF-8 (others are logged and left
    /// out: no request can name them), as (relative path, canonical file), sorted by
    /// relative path; where two roots hold the same relative path, the first root's file
    /// wins. Symbolic links to directories are not followed, and links that resolve
    /// outside the roots are left out.
    pub fn files(&self) -> Vec<(String, PathBuf)> {
        let mut found = std::collections::BTreeMap::new();
        for root in &self.dirs {
            let mut pending = vec![root.clone()];
            while let Some(dir) = pending.pop() {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let Ok(kind) = entry.file_type() else {
                        continue;
                    };
                    let path = entry.path();
                    if kind.is_dir() {
                        pending.push(path);
                    } else if found.len() < MAX_LISTED_FILES {
                        let Ok(file) = path.canonicalize() else {
                            continue;
                        };
                        if file.is_file() && self.dirs.iter().any(|r| file.starts_with(r)) {
                            let relative = path.strip_prefix(root).unwrap_or(&path);
                            // The protocol names files by UTF-8 strings: a name that is
                            // not one could be listed but never opened.
                            let Some(name) = relative.to_str() else {
                                log::warn!(
                                    "not listed: {} (its name is not UTF-8, which clients \
                                     cannot send)",
                                    path.display()
                                );
                                continue;
                            };
                            found.entry(name.to_owned()).or_insert(file);
                        }
                    }
                }
            }
        }
        found.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (PathBuf, Roots) {
        let base = std::env::temp_dir().join(format!("evshm-roots-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("root/sub")).unwrap();
        std::fs::write(base.join("root/sub/a.raw"), b"x").unwrap();
        std::fs::write(base.join("secret.raw"), b"x").unwrap();
        std::os::unix::fs::symlink(base.join("secret.raw"), base.join("root/escape.raw")).unwrap();
        let roots = Roots::new(&[base.join("root")]).unwrap();
        (base, roots)
    }

    #[test]
    fn resolves_and_confines() {
        let (base, roots) = setup();
        let code = |p: &str| match roots.resolve(p).unwrap_err() {
            PathError::Malformed { .. } => "malformed",
            PathError::OutsideRoots { .. } => "outside",
            PathError::NotFound { .. } => "not found",
        };
        assert_eq!(roots.resolve("sub/a.raw").unwrap().name, "sub/a.raw");
        assert_eq!(roots.resolve("./sub//a.raw").unwrap().name, "sub/a.raw");
        let absolute = base.join("root/sub/a.raw");
        assert_eq!(roots.resolve(absolute.to_str().unwrap()).unwrap().name, "sub/a.raw");
        assert_eq!(code("sub/../sub/a.raw"), "malformed");
        assert_eq!(code(""), "malformed");
        assert_eq!(code(base.join("secret.raw").to_str().unwrap()), "outside");
        assert_eq!(code("/etc/passwd"), "outside");
        assert_eq!(code("escape.raw"), "outside");
        assert_eq!(code("missing.raw"), "not found");
        assert_eq!(code("sub"), "not found");
        // Regression: a name that is not UTF-8 was listed with a replacement character,
        // and no request could open it.
        use std::os::unix::ffi::OsStrExt;
        let latin1 = std::ffi::OsStr::from_bytes(b"sub/caf\xe9.raw");
        std::fs::write(base.join("root").join(latin1), b"x").unwrap();
        let files: Vec<String> = roots.files().into_iter().map(|(r, _)| r).collect();
        assert_eq!(files, ["sub/a.raw"]);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
