//! How a test that cannot run here says so; shared by the cross-process tests and the
//! decoder tests of `evshm-formats`.

/// Says that the calling test cannot run here, and why, as a visible `SKIPPED` line
/// before the test returns. In CI (`$CI` set, and not `false` or `0`), where everything
/// the tests need is provided, it fails instead: a missing prerequisite there is a broken
/// set-up, and must not pass as a passing test.
pub fn skip(reason: &str) {
    let ci = std::env::var("CI")
        .is_ok_and(|value| !matches!(value.to_ascii_lowercase().as_str(), "" | "0" | "false"));
    assert!(!ci, "CI is set, and this test cannot run: {reason}");
    eprintln!("SKIPPED: {reason}");
}
