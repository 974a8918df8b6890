//! The proptest runner configuration shared by the property-test suites
//! (`tests/it/proptest_*.rs`).

use proptest::test_runner::{Config, TestRunner};

/// A runner with `default_cases` cases unless `PROPTEST_CASES` says otherwise, and no
/// regression files (failures print the minimal input and the seed instead).
pub fn runner(default_cases: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}
