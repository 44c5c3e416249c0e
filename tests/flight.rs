//! The Flight service (`evshmd --flight`) read by the Rust `RemoteClient` (feature
//! `remote`): the same rows as a local open, whole and windowed, chunks on parallel
//! connections, the token checked, errors carrying the daemon's codes. (The Python client,
//! TLS, two network namespaces and a daemon killed mid-stream: `tests/python/test_flight*.py`.)

use super::*;

use evshm::{RemoteClient, RemoteError, RemoteOptions, Table};

/// A port free on loopback now (the daemon binds it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn remote(address: &str, token: Option<&str>, parallel: usize) -> RemoteClient {
    let options = RemoteOptions {
        token: token.map(str::to_owned),
        parallel,
        timeout: Some(Duration::from_secs(60)),
        ..RemoteOptions::default()
    };
    RemoteClient::connect(address, options).unwrap()
}

fn code(error: RemoteError) -> String {
    match error {
        RemoteError::Daemon { code, .. } => code,
        other => panic!("expected the daemon's error, got {other}"),
    }
}

#[test]
fn remote_opens_equal_local_ones_and_need_the_token() {
    let address = format!("grpc://127.0.0.1:{}", free_port());
    let secrets = TempDir::new("flight-token");
    let token_file = secrets.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let args = ["--chunk-events", "20000", "--flight", &address, "--flight-token-file"];
    let args = [&args[..], &[token_file.to_str().unwrap()]].concat();
    let daemon = Daemon::start_with(None, &args, |root| write_evt3(&root.join("a.raw"), 200_000));
    let local = daemon.client();
    let whole = local.open("a.raw").unwrap();
    assert!(whole.batches().len() > 5, "in chunks");
    for parallel in [1, 4] {
        let got = remote(&address, Some("s3cret"), parallel).open("a.raw").unwrap();
        assert_eq!(got.batches().len(), whole.batches().len());
        assert_eq!(rows(got.batches()), rows(whole.batches()), "parallel {parallel}");
        assert_eq!(got.schema().metadata(), whole.schema().metadata());
    }
    let client = remote(&address, Some("s3cret"), 4);
    let times = |batch: usize| {
        whole.batches()[batch].column(0).as_primitive::<arrow_array::types::Int64Type>().clone()
    };
    // From inside the first chunk to inside the third: parts of chunks at both ends.
    let (t0, t1) = (times(0).value(1000), times(2).value(100));
    let window = client.open_with("a.raw", Some((t0, t1)), Table::Events).unwrap();
    let expected = local.open_window("a.raw", t0, t1).unwrap();
    assert_eq!(rows(window.batches()), rows(expected.batches()));
    let triggers = client.open_with("a.raw", None, Table::Triggers).unwrap();
    assert_eq!(triggers.schema().fields().len(), 3);
    assert_eq!(client.list().unwrap(), ["a.raw"]);
    assert_eq!(code(client.open("missing.raw").unwrap_err()), "not_found");
    assert_eq!(code(client.open("../a.raw").unwrap_err()), "bad_path");
    for token in [None, Some("wrong")] {
        let refused = remote(&address, token, 1).open("a.raw").unwrap_err();
        assert_eq!(code(refused), "unauthenticated");
    }
    let elsewhere = format!("grpc://127.0.0.1:{}", free_port());
    let gone = remote(&elsewhere, None, 1).open("a.raw").unwrap_err();
    assert!(matches!(gone, RemoteError::Unreachable { .. }), "{gone}");
}
