//! The `conduit` command, run as a user would.

use std::process::Command;

fn conduit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_conduit"))
}

#[test]
fn version_and_help() {
    let out = conduit().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("conduit "));
    let out = conduit().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for sub in ["tour", "bench"] {
        assert!(help.contains(sub), "help lists {sub}: {help}");
    }
    assert!(!help.contains("__tour-child"), "internal subcommands stay hidden");
}

#[test]
fn tour_runs_every_step_and_exits_0() {
    let out = conduit().arg("tour").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "tour failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for step in [
        "spawn",
        "round-trip",
        "bounded",
        "rendezvous",
        "unbounded",
        "rights",
        "port-set",
        "call",
        "dead-peer",
        "async",
    ] {
        assert!(text.lines().any(|l| l.trim_start().starts_with("ok") && l.contains(step)), "step {step}:\n{text}");
    }
    assert!(!text.contains("FAIL"));
}

#[test]
fn bench_writes_every_case_to_json() {
    let dir = std::env::temp_dir().join(format!("conduit-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("out.json");
    let svg = dir.join("out.svg");
    let out = conduit().args(["bench", "--smoke", "--json"]).arg(&json).arg("--svg").arg(&svg).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc = std::fs::read_to_string(&json).unwrap();
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("conduit/shm-loan"), "{chart}");
    std::fs::remove_dir_all(&dir).unwrap();
    for name in [
        "floor/spin",
        "floor/futex",
        "floor/pipe",
        "floor/uds",
        "floor/tcp",
        "floor/posix-mq",
        "floor/memcpy",
        "conduit/shm-spin",
        "conduit/shm",
        "conduit/shm-loan",
        "conduit/uds",
        "peer/iceoryx2",
        "peer/ipc-channel",
    ] {
        assert!(doc.contains(&format!("\"name\": \"{name}\"")), "{name} in {doc}");
    }
    for field in ["rtt_p50_ns", "rtt_p99_ns", "msgs_per_s_64b", "gb_per_s_1mib"] {
        assert!(doc.contains(field), "{field} in {doc}");
    }
}

#[test]
fn bench_rejects_an_unknown_case() {
    let out = conduit().args(["bench", "--only", "no/such"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no case matches"));
}
