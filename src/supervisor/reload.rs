//! `--reload`: file watching with the `notify` crate, filtered by include and exclude globs
//! that match file names (as uvicorn's do), debounced by `--reload-delay`.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use globset::{Glob, GlobSet, GlobSetBuilder};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};

pub struct ReloadConfig {
    pub dirs: Vec<PathBuf>,
    pub includes: Vec<String>,
    pub excludes: Vec<String>,
    pub delay: Duration,
}

pub struct Reloader {
    _watcher: RecommendedWatcher,
    events: mpsc::Receiver<notify::Result<notify::Event>>,
    includes: GlobSet,
    excludes: GlobSet,
    delay: Duration,
    due: Option<Instant>,
    changed: Vec<PathBuf>,
}

fn glob_set(patterns: &[String]) -> Result<GlobSet, String> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).map_err(|e| format!("bad reload pattern {p:?}: {e}"))?);
    }
    b.build().map_err(|e| e.to_string())
}

impl Reloader {
    pub fn new(config: &ReloadConfig) -> Result<Reloader, String> {
        let (tx, events) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(tx)
            .map_err(|e| format!("cannot watch files for --reload: {e}"))?;
        for dir in &config.dirs {
            watcher
                .watch(dir, RecursiveMode::Recursive)
                .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
        }
        Ok(Reloader {
            _watcher: watcher,
            events,
            includes: glob_set(&config.includes)?,
            excludes: glob_set(&config.excludes)?,
            delay: config.delay,
            due: None,
            changed: Vec::new(),
        })
    }

    fn relevant(&self, path: &Path) -> bool {
        let Some(name) = path.file_name() else {
            return false;
        };
        self.includes.is_match(name) && !self.excludes.is_match(name)
    }

    /// Files changed and the delay since the first change passed: the paths that changed.
    pub fn poll(&mut self) -> Option<Vec<PathBuf>> {
        while let Ok(event) = self.events.try_recv() {
            let Ok(event) = event else { continue };
            if matches!(event.kind, notify::EventKind::Access(_)) {
                continue;
            }
            for path in event.paths {
                if self.relevant(&path) {
                    self.due.get_or_insert(Instant::now() + self.delay);
                    if !self.changed.contains(&path) {
                        self.changed.push(path);
                    }
                }
            }
        }
        match self.due {
            Some(due) if Instant::now() >= due => {
                self.due = None;
                Some(std::mem::take(&mut self.changed))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_and_excludes_match_file_names() {
        let dir = std::env::temp_dir();
        let r = Reloader::new(&ReloadConfig {
            dirs: vec![dir],
            includes: vec!["*.py".into()],
            excludes: vec![".*".into(), "*.py[cod]".into()],
            delay: Duration::ZERO,
        })
        .unwrap();
        assert!(r.relevant(Path::new("/app/main.py")));
        assert!(!r.relevant(Path::new("/app/.hidden.py")));
        assert!(!r.relevant(Path::new("/app/main.pyc")));
        assert!(!r.relevant(Path::new("/app/notes.txt")));
    }
}
