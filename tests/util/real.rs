//! The real recordings beside the project (`../shared/data/real`) and their expected
//! decodes; shared by the cross-process tests and the decoder tests of `evshm-formats`.

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int8Type, Int16Type, Int64Type};

/// One event as the schema stores it: `t`, `x`, `y`, `p`.
pub type Row = (i64, i16, i16, i8);

/// The folder of real recordings, or `None` (the caller then skips, saying so).
pub fn real_data() -> Option<PathBuf> {
    let dir = std::env::var_os("EVSHM_REAL_DATA").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/real")
    });
    if dir.join("MANIFEST.json").is_file() {
        Some(dir)
    } else {
        let reason = format!("no real recordings at {} (set EVSHM_REAL_DATA)", dir.display());
        super::skip::skip(&reason);
        None
    }
}

/// The rows of event batches, in order.
pub fn rows(batches: &[RecordBatch]) -> Vec<Row> {
    let mut rows = Vec::new();
    for batch in batches {
        let column =
            |name| batch.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
        let t = column("t").as_primitive::<Int64Type>();
        let x = column("x").as_primitive::<Int16Type>();
        let y = column("y").as_primitive::<Int16Type>();
        let p = column("p").as_primitive::<Int8Type>();
        rows.extend(
            (0..batch.num_rows()).map(|i| (t.value(i), x.value(i), y.value(i), p.value(i))),
        );
    }
    rows
}

/// The batches of an Arrow IPC file.
pub fn read_ipc_file(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = arrow_ipc::reader::FileReader::try_new(file, None).unwrap();
    reader.map(Result::unwrap).collect()
}
