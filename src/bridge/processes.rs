//! `supervise()`: the Python entry point of the supervisor. Converts the settings and runs
//! `crate::supervisor::run` with the GIL released for the whole life of the server.

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::seconds;
use crate::supervisor::{self, ReloadConfig, SupervisorConfig};

fn get<'py, T: FromPyObjectOwned<'py>>(s: &Bound<'py, PyDict>, key: &str) -> PyResult<T> {
    super::setting(s, key, "supervisor setting")
}

/// Runs and supervises worker processes until SIGINT/SIGTERM; returns the exit code.
#[pyfunction]
pub fn supervise(
    py: Python<'_>,
    command: Vec<String>,
    env: Vec<(String, String)>,
    settings: &Bound<'_, PyDict>,
) -> PyResult<i32> {
    if command.is_empty() {
        return Err(PyValueError::new_err("supervise() needs a worker command"));
    }
    let reload = if get::<bool>(settings, "reload")? {
        Some(ReloadConfig {
            dirs: get::<Vec<String>>(settings, "reload_dirs")?
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            includes: get(settings, "reload_includes")?,
            excludes: get(settings, "reload_excludes")?,
            delay: seconds(get(settings, "reload_delay")?, "--reload-delay")?,
        })
    } else {
        None
    };
    let healthcheck: f64 = get(settings, "healthcheck")?;
    let metrics = match get::<Option<(String, u16)>>(settings, "metrics_addr")? {
        Some((host, port)) => Some(std::net::TcpListener::bind((host.as_str(), port)).map_err(
            |e| {
                pyo3::exceptions::PyOSError::new_err(format!(
                    "cannot listen for metrics on {host}:{port}: {e}"
                ))
            },
        )?),
        None => None,
    };
    let config = SupervisorConfig {
        metrics,
        command,
        env,
        workers: get(settings, "workers")?,
        reload,
        healthcheck: (healthcheck > 0.0)
            .then(|| seconds(healthcheck, "--timeout-worker-healthcheck"))
            .transpose()?,
    };
    Ok(py.detach(|| supervisor::run(config)))
}
