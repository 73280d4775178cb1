//! Starting the asyncio Task that runs the app for one request or WebSocket session.
//!
//! Owns how a coroutine becomes a Task; must not know what the coroutine does. Creating the
//! Task is the largest single piece of a small request's Python-side cost, and two parts of
//! `loop.create_task` do nothing for us: uvloop's wrapper around the `Task` constructor, and
//! on Python 3.11 the `"Task-N"` name formatted for every Task (`PyUnicode_FromFormat`,
//! about 1,500 instructions; 3.12 formats it only when someone asks). So when no task
//! factory is installed, the `Task` type is called directly, with the same arguments the
//! loop's own `create_task` gives it; a factory (set up to the end of lifespan startup)
//! keeps `loop.create_task`, so that it sees every Task.

use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

pub(super) enum TaskStarter {
    /// `asyncio.Task(coro, loop=loop[, name=...])`.
    Direct {
        task_type: Py<PyAny>,
        /// `{"loop": loop}`, reused for every call (the constructor does not keep it).
        kwargs: Py<PyDict>,
        /// Python 3.11: a name made here, cheaper than the one the constructor formats.
        name_tasks: bool,
    },
    /// `loop.create_task(coro)`: a task factory is installed.
    Loop(Py<PyAny>),
}

/// Numbers the names of the Tasks started directly (`ferricorn-1`, `ferricorn-2`, ...).
static TASK_NUMBER: AtomicU64 = AtomicU64::new(0);

impl TaskStarter {
    pub(super) fn new(py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> PyResult<Self> {
        let factory = event_loop.call_method0(intern!(py, "get_task_factory"))?;
        if !factory.is_none() {
            return Ok(TaskStarter::Loop(
                event_loop.getattr(intern!(py, "create_task"))?.unbind(),
            ));
        }
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "loop"), event_loop)?;
        Ok(TaskStarter::Direct {
            task_type: py.import("asyncio")?.getattr("Task")?.unbind(),
            kwargs: kwargs.unbind(),
            name_tasks: py.version_info() < (3, 12),
        })
    }

    /// Schedules `coro` on the loop and returns its Task.
    pub(super) fn start<'py>(
        &self,
        py: Python<'py>,
        coro: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self {
            TaskStarter::Loop(create_task) => create_task.bind(py).call1((coro,)),
            TaskStarter::Direct {
                task_type,
                kwargs,
                name_tasks,
            } => {
                let kwargs = kwargs.bind(py);
                if *name_tasks {
                    let n = TASK_NUMBER.fetch_add(1, Ordering::Relaxed) + 1;
                    let name = PyString::new(py, &format!("ferricorn-{n}"));
                    kwargs.set_item(intern!(py, "name"), name)?;
                }
                task_type
                    .bind(py)
                    .call(PyTuple::new(py, [coro])?, Some(kwargs))
            }
        }
    }
}
