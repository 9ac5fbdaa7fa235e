//! The fleet-scale front door: SIGINT during `specsim run` leaves result files that say they are
//! partial; `specsim trace synth` streams; `specsim bench` reports its columns.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_specsim"))
}

#[test]
fn sigint_leaves_files_that_say_they_are_partial() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    // Long enough (minutes) that the signal lands mid-run.
    let mut child = bin()
        .args([
            "run",
            "-q",
            "--set",
            "trace.synthetic.requests=10000000",
            "--set",
            "trace.synthetic.rate=30",
            "--out",
        ])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until every policy (each runs on its own thread) has written rows past the header. The
    // bound only guards against a hang: on a loaded machine the first rows can take minutes.
    let t = Instant::now();
    let written = |p: &str| {
        std::fs::read(out.join(p).join("requests.csv"))
            .is_ok_and(|b| b.iter().filter(|&&c| c == b'\n').count() >= 2)
    };
    while !["none", "static-3", "specserve"].iter().all(|p| written(p)) {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            panic!("specsim run ended ({status}) before the signal: {err}");
        }
        assert!(t.elapsed() < Duration::from_secs(900), "no rows written");
        std::thread::sleep(Duration::from_millis(200));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "an interrupted run exits non-zero");
    assert!(err.contains("interrupted"), "{err}");
    assert!(!out.join("comparison.csv").exists());
    for p in ["none", "static-3", "specserve"] {
        let d = out.join(p);
        assert!(d.join("INCOMPLETE").exists(), "{p}");
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap())
                .unwrap();
        assert!(
            s["partial"].as_str().unwrap().contains("interrupted"),
            "{p}"
        );
        assert_eq!(s["requests"], 10_000_000);
        let rows = std::fs::read_to_string(d.join("requests.csv"))
            .unwrap()
            .lines()
            .count()
            - 1;
        assert_eq!(s["finished"].as_u64().unwrap() as usize, rows, "{p}");
        assert!(rows < 10_000_000);
    }
}

#[test]
fn trace_synth_streams_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("w.csv");
    let o = bin()
        .args([
            "trace",
            "synth",
            "--requests",
            "200000",
            "--rate",
            "50",
            "--prompt",
            "lognormal:128,64",
            "--output",
            "fixed:20",
            "--out",
        ])
        .arg(&p)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&p).unwrap();
    assert_eq!(text.lines().count(), 200_001);
    assert!(text.starts_with("arrival_s,prompt_tokens,output_tokens,category\n0.000000000,"));
    assert!(String::from_utf8_lossy(&o.stderr).contains("200000 requests"));
}

#[test]
fn bench_reports_every_column() {
    let o = bin()
        .args(["bench", "--points", "2x2000", "--policies", "none"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    for col in [
        "replicas",
        "requests",
        "wall s",
        "CPU s",
        "RSS MiB",
        "requests/s",
        "events/s",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["2", "2000", "none"]);
    let rss: f64 = row[5].parse().unwrap();
    assert!(rss > 1.0 && rss < 1024.0, "{rss}");
}
