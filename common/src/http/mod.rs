//! The HTTP edge shared by the functions: the one error type, extractors for identity and
//! bodies, audit logging, and the JSON shapes of the API.

pub mod audit;
pub mod error;
pub mod extract;
pub mod wire;

pub use error::ApiError;
pub use extract::{ApiJson, ApiQuery, IapUser, IapVerifier};
