//! Test helpers shared by the integration tests (and the `fake_swift` example).
pub mod fake_swift;
