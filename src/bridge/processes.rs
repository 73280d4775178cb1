//! `supervise()`: the Python entry point of the supervisor. Converts the typed settings and
//! runs `crate::supervisor::run` with the GIL released for the whole life of the server.

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::seconds;
use crate::settings::SupervisorSettings;
use crate::supervisor::{self, ReloadConfig, SharedListener, SupervisorConfig};

/// Runs and supervises worker processes until SIGINT/SIGTERM; returns the exit code.
#[pyfunction]
/// `listen_fd` (TCP) or `listen_path` (Unix) name the listening socket the server bound
/// itself, which is taken out of service at SIGTERM.
#[pyo3(signature = (command, env, config, listen_fd=None, listen_path=None))]
pub fn supervise(
    py: Python<'_>,
    command: Vec<String>,
    env: Vec<(String, String)>,
    config: SupervisorSettings,
    listen_fd: Option<i32>,
    listen_path: Option<PathBuf>,
) -> PyResult<i32> {
    if command.is_empty() {
        return Err(PyValueError::new_err("supervise() needs a worker command"));
    }
    let reload = if config.reload {
        Some(ReloadConfig {
            dirs: config.reload_watch_dirs.iter().map(PathBuf::from).collect(),
            includes: config.reload_include_globs.clone(),
            excludes: config.reload_exclude_globs.clone(),
            delay: seconds(config.reload_delay, "--reload-delay")?,
        })
    } else {
        None
    };
    let healthcheck = config.timeout_worker_healthcheck;
    let metrics = match &config.supervisor_metrics_addr {
        Some((host, port)) => Some(std::net::TcpListener::bind((host.as_str(), *port)).map_err(
            |e| {
                pyo3::exceptions::PyOSError::new_err(format!(
                    "cannot listen for metrics on {host}:{port}: {e}"
                ))
            },
        )?),
        None => None,
    };
    let listener = match (listen_path, listen_fd) {
        (Some(path), _) => Some(SharedListener::Unix(path)),
        (None, Some(fd)) => Some(SharedListener::Tcp(fd)),
        (None, None) => None,
    };
    let config = SupervisorConfig {
        listener,
        metrics,
        command,
        env,
        workers: config.worker_processes,
        reload,
        healthcheck: (healthcheck > 0.0)
            .then(|| seconds(healthcheck, "--timeout-worker-healthcheck"))
            .transpose()?,
    };
    Ok(py.detach(|| supervisor::run(config)))
}
