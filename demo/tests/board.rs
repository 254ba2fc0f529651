//! The demo's `board` subcommand as users run it: a writer and a reader process, and the
//! tools (`inspect`) seeing boards.

mod common;

use common::*;

#[test]
fn board_reports_freshness_and_skipped_values_and_tools_know_boards() {
    let name = TestName::new("demo-board");
    let out = demo(&[
        "board",
        "--name",
        &name,
        "--seconds",
        "0.3",
        "--pace",
        "1ms",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = last_json(&out);
    let published = report["writer"]["published"].as_u64().unwrap();
    let reader = &report["reader"];
    let read = reader["read"].as_u64().unwrap();
    assert!(read > 0 && read <= published, "{report}");
    assert_eq!(reader["ended"], "writer closed", "{report}");
    // Every value was either read or skipped, none twice.
    assert_eq!(
        read + reader["skipped"].as_u64().unwrap(),
        published,
        "{report}"
    );
    assert!(reader["age_ns"]["p50"].as_u64().unwrap() > 0);
    // The writer removed its board on exit.
    assert!(!name.path(".fs.board").exists());
    let out = demo(&["inspect", &name]);
    assert!(!out.status.success());
}
