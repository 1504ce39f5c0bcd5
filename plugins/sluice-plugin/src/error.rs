//! The error type a handler returns, mirroring the WIT `error` variant.

use std::fmt;

/// Why a handler call failed.
///
/// The three kinds are kept apart because the host treats them differently:
/// a config error stops validation, a data error is subject to the step's
/// `on_error` policy, and an internal error is a plugin bug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The step's config is invalid.
    Config {
        /// What is wrong.
        message: String,
        /// The offending key as a dotted path (`sma.0.window`), where known.
        key: Option<String>,
    },
    /// The input data cannot be processed.
    Data {
        /// What is wrong.
        message: String,
        /// Row index within the batch passed to the failing call, where known.
        row: Option<u64>,
        /// The offending column, where known.
        column: Option<String>,
    },
    /// A bug in the plugin.
    Internal(String),
}

impl Error {
    /// A config error; add the offending key with [`Error::key`].
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config { message: message.into(), key: None }
    }

    /// A data error; add the location with [`Error::row`] and [`Error::column`].
    pub fn data(message: impl Into<String>) -> Self {
        Error::Data { message: message.into(), row: None, column: None }
    }

    /// An internal error (a plugin bug).
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }

    /// Sets the dotted config key of a config error (no effect on other kinds).
    pub fn key(mut self, path: impl Into<String>) -> Self {
        if let Error::Config { key, .. } = &mut self {
            *key = Some(path.into());
        }
        self
    }

    /// Sets the row of a data error (no effect on other kinds).
    pub fn row(mut self, index: usize) -> Self {
        if let Error::Data { row, .. } = &mut self {
            *row = Some(index as u64);
        }
        self
    }

    /// Sets the column of a data error (no effect on other kinds).
    pub fn column(mut self, name: impl Into<String>) -> Self {
        if let Error::Data { column, .. } = &mut self {
            *column = Some(name.into());
        }
        self
    }

    /// The message, without location.
    pub fn message(&self) -> &str {
        match self {
            Error::Config { message, .. } | Error::Data { message, .. } => message,
            Error::Internal(message) => message,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config { message, key } => {
                write!(f, "config error: {message}")?;
                if let Some(key) = key {
                    write!(f, " (key `{key}`)")?;
                }
                Ok(())
            }
            Error::Data { message, row, column } => {
                write!(f, "data error: {message}")?;
                if let Some(column) = column {
                    write!(f, " (column `{column}`)")?;
                }
                if let Some(row) = row {
                    write!(f, " (row {row})")?;
                }
                Ok(())
            }
            Error::Internal(message) => write!(f, "internal error: {message}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<arrow_schema::ArrowError> for Error {
    /// Arrow errors are data errors unless the handler says otherwise.
    fn from(e: arrow_schema::ArrowError) -> Self {
        Error::data(e.to_string())
    }
}
