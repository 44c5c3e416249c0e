//! Just enough of the flatbuffers wire format to read two tables, every access checked:
//! `None` for anything outside the bytes given.

pub(super) fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

pub(super) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

pub(super) fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    u32_at(b, at).map(|v| v as i32)
}

pub(super) fn i64_at(b: &[u8], at: usize) -> Option<i64> {
    Some(i64::from_le_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// Where field `index` of the table at `table` is stored, if present.
pub(super) fn field(b: &[u8], table: usize, index: usize) -> Option<usize> {
    let vtable = usize::try_from(table as i64 - i64::from(i32_at(b, table)?)).ok()?;
    let entry = 4 + 2 * index;
    if entry + 2 > usize::from(u16_at(b, vtable)?) {
        return None;
    }
    let offset = u16_at(b, vtable + entry)?;
    (offset != 0).then(|| table + usize::from(offset))
}

/// Start and length of the vector an offset at `at` points to.
pub(super) fn vector(b: &[u8], at: usize) -> Option<(usize, usize)> {
    let start = at.checked_add(u32_at(b, at)? as usize)?;
    Some((start + 4, u32_at(b, start)? as usize))
}

/// The string an offset at `at` points to.
pub(super) fn string(b: &[u8], at: usize) -> Option<&str> {
    let (start, len) = vector(b, at)?;
    std::str::from_utf8(b.get(start..start.checked_add(len)?)?).ok()
}
