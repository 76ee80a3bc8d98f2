//! The failure type at the binary's edge, carrying the exit status of DESIGN.md: 2 for bad
//! usage or bad input (the message names the argument, file and line), 1 for a runtime failure.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Bad usage or bad input: exit 2.
    Input,
    /// ZooKeeper unreachable, a port in use, …: exit 1.
    Runtime,
}

/// An error with the exit status it maps to.
#[derive(Debug)]
pub struct Failure {
    pub kind: FailureKind,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn input(error: impl Into<anyhow::Error>) -> Self {
        Self {
            kind: FailureKind::Input,
            error: error.into(),
        }
    }

    pub fn runtime(error: impl Into<anyhow::Error>) -> Self {
        Self {
            kind: FailureKind::Runtime,
            error: error.into(),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self.kind {
            FailureKind::Input => 2,
            FailureKind::Runtime => 1,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

/// Shorthands for tagging a `Result`'s error with its exit status.
pub trait ResultExt<T> {
    fn or_input(self) -> Result<T, Failure>;
    fn or_runtime(self) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> ResultExt<T> for Result<T, E> {
    fn or_input(self) -> Result<T, Failure> {
        self.map_err(Failure::input)
    }

    fn or_runtime(self) -> Result<T, Failure> {
        self.map_err(Failure::runtime)
    }
}
