//! `specsim serve` as an operator runs it: signals, drains, exit status.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `specsim serve --fake` on a free loopback port; returns the child and its address.
fn serve(extra: &[&str]) -> (Child, String, std::thread::JoinHandle<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_specsim"))
        .args(["serve", "--fake", "--port", "0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start specsim serve");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "serve exited early");
        if let Some(i) = line.find("http://") {
            let rest = &line[i + "http://".len()..];
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep reading stderr so the server never blocks on a full pipe.
    let rest = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    (child, addr, rest)
}

/// Opens a streaming completion and returns the connection once the response headers arrived.
fn open_stream(addr: &str, max_tokens: u32) -> BufReader<TcpStream> {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = format!(
        "{{\"prompt\": \"hello world, this is a stream\", \"max_tokens\": {max_tokens}, \"stream\": true}}"
    );
    write!(
        c,
        "POST /v1/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut r = BufReader::new(c);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    assert!(status.contains(" 200 "), "{status}");
    r
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// SIGTERM (what Kubernetes, systemd and docker send) drains like Ctrl-C: every open stream, running
/// or queued, ends with `[DONE]` (after its last chunk, or after an error event once the grace period
/// is over), the listener stops accepting, and the process exits 0 within the grace period.
#[test]
fn sigterm_drains_open_streams_and_exits_zero() {
    let grace = 2.0;
    let (mut child, addr, stderr) = serve(&[
        "--fake-step-ms",
        "20",
        "--max-num-seqs",
        "2",
        "--shutdown-grace",
        &grace.to_string(),
    ]);
    // One stream that finishes within the grace, then four long ones (two run, two wait in the
    // queue).
    let mut streams = vec![open_stream(&addr, 60)];
    streams.extend((0..4).map(|_| open_stream(&addr, 4000)));
    // And one non-streaming request that cannot finish within the grace.
    let mut plain = TcpStream::connect(&addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let body = "{\"prompt\": \"hello\", \"max_tokens\": 4000}";
    write!(
        plain,
        "POST /v1/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut ended_by_error = 0;
    for (i, s) in streams.into_iter().enumerate() {
        let mut body = String::new();
        s.into_inner()
            .read_to_string(&mut body)
            .unwrap_or_else(|e| panic!("stream {i}: {e}"));
        let events: Vec<&str> = body
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        assert_eq!(
            events.last(),
            Some(&"[DONE]"),
            "stream {i} cut short: {body}"
        );
        let before = events[events.len() - 2];
        let v: serde_json::Value = serde_json::from_str(before).unwrap();
        if v.get("error").is_some() {
            assert_eq!(v["error"]["code"], "shutting_down", "{before}");
            ended_by_error += 1;
        } else {
            assert!(
                v["choices"][0]["finish_reason"].is_string(),
                "stream {i}: {before}"
            );
        }
        // The chunked body was closed properly (its last chunk is the empty one).
        assert!(
            body.ends_with("0\r\n\r\n"),
            "stream {i} not terminated: {body:?}"
        );
    }
    assert_eq!(
        ended_by_error, 4,
        "the long streams end at the grace period"
    );
    let mut answer = String::new();
    plain.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("shutting_down"), "{answer}");
    let status = wait_exit(&mut child, Duration::from_secs_f64(grace + 5.0)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("serve did not exit after SIGTERM");
    });
    let took = t0.elapsed().as_secs_f64();
    assert!(status.success(), "exit status {status:?}");
    assert!(took < grace + 3.0, "took {took:.1} s");
    let log = stderr.join().unwrap();
    assert!(log.contains("SIGTERM: draining"), "{log}");
    // Nothing listens any more.
    assert!(TcpStream::connect(&addr).is_err());
}

/// With nothing in flight, SIGTERM stops the server at once, exit status 0.
#[test]
fn sigterm_on_an_idle_server_exits_zero_at_once() {
    let (mut child, _addr, _stderr) = serve(&[]);
    let t0 = Instant::now();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(10)).expect("exit");
    assert!(status.success(), "{status:?}");
    assert!(t0.elapsed() < Duration::from_secs(3));
}

#[test]
fn serve_help_says_how_it_stops() {
    let o = Command::new(env!("CARGO_BIN_EXE_specsim"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(
        help.contains("SIGTERM") && help.contains("--shutdown-grace"),
        "{help}"
    );
}
