//! The protocol's single source of truth for every language: the constants, the error
//! codes, the default socket chain and the example messages of `docs/PROTOCOL.md`,
//! checked here against the Rust types and written to `protocol/fixtures/protocol.json`,
//! which the Python client's tests read. Run with `EVSHM_BLESS=1` to rewrite the file
//! after a deliberate change; without it, a stale file fails this test.

use std::path::{Path, PathBuf};

use evshm_protocol::{
    DAEMON_UID_VARIABLE, ErrorCode, EvictReply, HelloReply, ListReply, MAX_REPLY_LINE,
    MAX_REQUEST_LINE, OpenReply, PROTOCOL_VERSION, ReleaseReply, ReplyError, Request, StatsReply,
    parse_reply,
};
use serde_json::{Value, json};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// The JSON messages of the ```json blocks of `markdown`, in order: a message starts on
/// a line beginning with `{` and runs until the next such line or the end of its block.
fn messages(markdown: &str) -> Vec<Value> {
    let mut found = Vec::new();
    for block in markdown.split("```json\n").skip(1) {
        let block = block.split("```").next().unwrap();
        let mut current = String::new();
        for line in block.lines() {
            if line.starts_with('{') && !current.is_empty() {
                found.push(std::mem::take(&mut current));
            }
            current.push_str(line);
            current.push('\n');
        }
        if !current.trim().is_empty() {
            found.push(current);
        }
    }
    (found.iter())
        .map(|text| {
            // The examples shorten segment names with an ellipsis; it is still one string.
            serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
        })
        .collect()
}

/// Checks one reply of `op` against its Rust type: a success parses as that type, a
/// failure carries a code this protocol version sends.
fn check_reply(op: &str, reply: &Value) {
    let line = serde_json::to_vec(reply).unwrap();
    let checked = match op {
        "hello" => parse_reply::<HelloReply>(&line).map(drop),
        "list" => parse_reply::<ListReply>(&line).map(drop),
        "open" => parse_reply::<OpenReply>(&line).map(|open| open.check().unwrap()),
        "release" => parse_reply::<ReleaseReply>(&line).map(drop),
        "stats" => parse_reply::<StatsReply>(&line).map(drop),
        "evict" => parse_reply::<EvictReply>(&line).map(drop),
        other => panic!("a reply to unknown op {other}"),
    };
    match checked {
        Ok(()) => {}
        Err(ReplyError::Daemon(error)) => {
            assert!(ErrorCode::ALL.contains(&error.code), "unknown code in {reply}")
        }
        Err(e) => panic!("the {op} reply {reply} does not parse: {e}"),
    }
}

/// The documented request/reply pairs, each checked against the Rust types.
fn exchanges() -> Vec<Value> {
    let markdown = std::fs::read_to_string(repository().join("docs/PROTOCOL.md")).unwrap();
    let mut exchanges = Vec::new();
    let mut request: Option<Value> = None;
    for message in messages(&markdown) {
        if message.get("op").is_some() {
            let line = serde_json::to_vec(&message).unwrap();
            if let Err(e) = Request::parse(&line) {
                panic!("docs/PROTOCOL.md: {message} is not a valid request: {e}");
            }
            request = Some(message);
        } else {
            let request = request.take().expect("a reply follows its request");
            let op = request["op"].as_str().unwrap().to_owned();
            check_reply(&op, &message);
            exchanges.push(json!({ "op": op, "request": request, "reply": message }));
        }
    }
    exchanges
}

/// Replies every client must refuse: the documented open reply, broken one way each.
fn malformed_open_replies(exchanges: &[Value]) -> Vec<Value> {
    let good = (exchanges.iter())
        .find(|e| {
            e["op"] == "open" && e["reply"]["ok"] == true && e["reply"]["chunks"][1].is_object()
        })
        .expect("docs/PROTOCOL.md shows an open reply of two chunks")["reply"]
        .clone();
    let broken = |why: &str, change: &dyn Fn(&mut Value)| {
        let mut reply = good.clone();
        change(&mut reply);
        json!({ "why": why, "reply": reply })
    };
    let cases = vec![
        broken("rows is not the sum of the chunks' rows asked for", &|r| {
            r["rows"] = json!(r["rows"].as_u64().unwrap() + 1)
        }),
        broken("chunks out of recording order", &|r| r["chunks"].as_array_mut().unwrap().reverse()),
        broken("a gap inside the rows asked for", &|r| {
            r["chunks"][1]["start"] = json!(1);
            r["rows"] = json!(r["rows"].as_u64().unwrap() - 1);
        }),
        broken("rows asked for beyond the chunk's batch", &|r| {
            let rows = r["chunks"][1]["rows"].as_u64().unwrap();
            r["chunks"][1]["end"] = json!(rows + 1);
        }),
        broken("a window that ends before it starts", &|r| r["window"] = json!([5, 4])),
        broken("an empty extent", &|r| r["chunks"][0]["extent"]["size"] = json!(0)),
        broken("an extent in an arena the reply does not list", &|r| {
            r["chunks"][1]["extent"]["arena"] = json!(1);
        }),
        broken("an extent past the end of its arena", &|r| {
            let size = r["arenas"][0]["size"].as_u64().unwrap();
            r["chunks"][1]["extent"]["offset"] = json!(size - 64);
        }),
        broken("an arena listed twice", &|r| {
            let arena = r["arenas"][0].clone();
            r["arenas"].as_array_mut().unwrap().push(arena);
        }),
        broken("a missing field", &|r| {
            r.as_object_mut().unwrap().remove("lease");
        }),
    ];
    for case in &cases {
        let line = serde_json::to_vec(&case["reply"]).unwrap();
        let refused = parse_reply::<OpenReply>(&line).map(|reply| reply.check());
        assert!(
            !matches!(refused, Ok(Ok(()))),
            "the Rust client accepts an open reply with {}",
            case["why"]
        );
    }
    cases
}

#[test]
fn fixtures_hold_what_the_rust_protocol_says() {
    let exchanges = exchanges();
    let ops: Vec<&str> = exchanges.iter().map(|e| e["op"].as_str().unwrap()).collect();
    for op in Request::OPS {
        assert!(ops.contains(&op), "docs/PROTOCOL.md shows no {op} exchange");
    }
    let fixture = json!({
        "about": "Written by protocol/tests/fixtures.rs from the Rust protocol crate and \
                  docs/PROTOCOL.md (EVSHM_BLESS=1 cargo test -p evshm-protocol); read by the \
                  Python client's tests. Do not edit by hand.",
        "protocol_version": PROTOCOL_VERSION,
        "max_request_line": MAX_REQUEST_LINE,
        "max_reply_line": MAX_REPLY_LINE,
        "ops": Request::OPS,
        "error_codes": ErrorCode::ALL.map(ErrorCode::as_str),
        "default_socket": [
            {"env": {"EVSHM_SOCKET": "/x/s.sock", "XDG_RUNTIME_DIR": "/run/user/7"},
             "path": "/x/s.sock"},
            {"env": {"EVSHM_SOCKET": "", "XDG_RUNTIME_DIR": "/run/user/7"},
             "path": "/run/user/7/evshm.sock"},
            {"env": {"EVSHM_SOCKET": "", "XDG_RUNTIME_DIR": ""},
             "path": "/tmp/evshm-{uid}/evshm.sock"},
        ],
        "fallback_socket_dir": "/tmp/evshm-{uid}",
        "daemon_uid_variable": DAEMON_UID_VARIABLE,
        "exchanges": exchanges,
        "malformed_open_replies": malformed_open_replies(&exchanges),
    });
    let text = serde_json::to_string_pretty(&fixture).unwrap() + "\n";
    let path = repository().join("protocol/fixtures/protocol.json");
    if std::env::var_os("EVSHM_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        written == text,
        "{} is stale: rerun with EVSHM_BLESS=1 cargo test -p evshm-protocol and commit it",
        path.display()
    );
}

#[test]
fn the_default_socket_chain_is_the_fixtures() {
    // Only this test of this binary touches the environment.
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(repository().join("protocol/fixtures/protocol.json")).unwrap(),
    )
    .unwrap();
    let uid = rustix::process::getuid().as_raw().to_string();
    for case in fixture["default_socket"].as_array().unwrap() {
        for (name, value) in case["env"].as_object().unwrap() {
            // SAFETY: no other thread of this test binary reads or writes the environment.
            unsafe { std::env::set_var(name, value.as_str().unwrap()) };
        }
        let expected = case["path"].as_str().unwrap().replace("{uid}", &uid);
        assert_eq!(evshm_protocol::default_socket_path(), PathBuf::from(expected));
    }
}
