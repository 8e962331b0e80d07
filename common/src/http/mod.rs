//! The HTTP edge shared by the functions: the one error type and its JSON shape.

pub mod error;

pub use error::ApiError;
