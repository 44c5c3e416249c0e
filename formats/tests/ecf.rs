//! ECF buffers written by evshm's encoder decode as evlib 0.13.2's decoder reads them
//! (`tests/data/ecf/make_fixtures.py`), in each of the codec's three layouts of x, y and p.

#[path = "../../tests/util/real.rs"]
#[expect(dead_code, reason = "a shared module; these tests need only its IPC reader")]
mod real;
#[path = "../../tests/util/skip.rs"]
mod skip;

use std::path::PathBuf;

use evshm_formats::{VecSink, ecf_decode};
use real::{Row, read_ipc_file, rows};

#[test]
fn every_layout_decodes_as_evlib_reads_it() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/ecf");
    for name in ["packed", "yruns", "masked"] {
        let buffer = std::fs::read(dir.join(format!("{name}.ecf"))).unwrap();
        let mut sink = VecSink::default();
        let n = ecf_decode(&buffer, &mut sink).unwrap();
        let got: Vec<Row> =
            sink.events.iter().map(|e| (e.t, e.x as i16, e.y as i16, e.p as i8)).collect();
        // evlib gives an OFF event polarity -1.
        let evlib: Vec<Row> = rows(&read_ipc_file(&dir.join(format!("{name}.expected.arrow"))))
            .into_iter()
            .map(|(t, x, y, p)| (t, x, y, p.max(0)))
            .collect();
        assert_eq!(n, 3000, "{name}");
        assert_eq!(got, evlib, "{name}");
    }
}
