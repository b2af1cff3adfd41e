//! `conduit chaos`: a short seeded run, as CI runs it. Alone in its test
//! binary: the run counts every System V object, `/dev/shm` and
//! `/dev/mqueue` entry and socket file that appears during a trial as a
//! leak, so no other test may make one meanwhile.

use std::process::Command;

#[test]
fn a_seeded_chaos_run_kills_every_kind_and_finds_nothing_lost_or_leaked() {
    let json = std::env::temp_dir().join(format!("conduit-chaos-test-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(["chaos", "--trials", "60", "--seed", "16", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chaos failed:\n{text}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    assert_eq!(v["trials"], 60);
    for field in ["hangs", "corrupt", "duplicates", "lost", "leaks"] {
        assert_eq!(v[field], 0, "{field}: {v}");
    }
    for field in ["detect_p50_ms", "detect_p99_ms", "detect_max_ms"] {
        let ms = v[field].as_f64().unwrap_or_else(|| panic!("{field} is a number: {v}"));
        assert!(ms > 0.0, "{field}: every trial's survivor learned of the death: {v}");
    }
    // The seed picks the kinds: this one reaches every kind at least once
    // (a kind that never ran would prove nothing).
    for (kind, r) in v["kinds"].as_object().unwrap() {
        assert!(r["trials"].as_u64().unwrap() > 0, "seed 16 ran no {kind} trial: {v}");
    }
    // A bad kind is refused with the list of kinds.
    let out = Command::new(env!("CARGO_BIN_EXE_conduit")).args(["chaos", "--only", "carrier-pigeon"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mailbox-durable"));
}
