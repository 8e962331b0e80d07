//! Nothing here: the crate exists for its integration tests in `system/`.
