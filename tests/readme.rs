//! Docs that run, Rust side: every Rust block of README.md appears verbatim in
//! [`readme_rust_blocks`] (checked here), which a child process runs against a daemon
//! serving the recordings the README names, found through `$EVSHM_SOCKET` as a reader's
//! default socket. `tests/python/test_readme.py` runs the shell and Python blocks.

use super::*;

/// The `rust` blocks of `markdown`, as lines without their indentation.
fn rust_blocks(markdown: &str) -> Vec<Vec<&str>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in markdown.lines() {
        match (&mut current, line) {
            (None, "```rust") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), line) => block.push(line.trim()),
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn every_rust_block_of_the_readme_is_in_the_code_run_below() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let blocks = rust_blocks(&readme);
    assert!(blocks.len() >= 2, "README.md shows Rust");
    let source: Vec<&str> = include_str!("readme.rs").lines().map(str::trim).collect();
    for block in blocks {
        let found = source.windows(block.len()).any(|lines| lines == block.as_slice());
        assert!(found, "this README block is not run by tests/readme.rs:\n{}", block.join("\n"));
    }
}

#[test]
fn the_readme_rust_blocks_run_against_a_daemon() {
    let daemon = Daemon::start(|root| {
        for dir in ["day1", "drive"] {
            std::fs::create_dir(root.join(dir)).unwrap();
        }
        write_evt3(&root.join("day1/cam0.raw"), 100_000);
        // Two quiet hours, as `evshm generate --events 2000000 --rate 300` writes them.
        let quiet = SynthConfig { rate: 300.0, ..SynthConfig::events(2_000_000) };
        let file = std::fs::File::create(root.join("drive/2h.raw")).unwrap();
        evshm_formats::synth::write_evt3(quiet, std::io::BufWriter::new(file)).unwrap();
    });
    let run = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "readme::readme_rust_blocks", "--ignored", "--nocapture"])
        .env("EVSHM_SOCKET", &daemon.socket)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("100000 events, schema "), "{stdout}");
    assert!(stdout.contains("the window holds "), "{stdout}");
}

/// The README's Rust blocks, in the order a program needs them; not a test on its own
/// (so ignored, and shown as such): run by `the_readme_rust_blocks_run_against_a_daemon`.
#[test]
#[ignore = "run by the_readme_rust_blocks_run_against_a_daemon, with $EVSHM_SOCKET set"]
fn readme_rust_blocks() -> Result<(), ClientError> {
    let client = evshm::Client::connect_default()?; // or Client::connect(path)
    let recording = client.open("day1/cam0.raw")?;
    for batch in recording.batches() {
        // Buffers point into the read-only mapping; no byte was copied.
        println!("{} events, schema {:?}", batch.num_rows(), batch.schema());
    }

    let window = client.open_window("drive/2h.raw", 3_600_000_000, 3_600_050_000)?;
    println!("the window holds {} events", window.rows());
    assert!(window.rows() > 0);
    Ok(())
}
