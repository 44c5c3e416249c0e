use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::temp_dir::TempDir;

fn arenas(dir: &TempDir, sealed: bool, size: u64, most: u64) -> Arc<Arenas> {
    Arenas::new(&dir.0, &InstanceId::random().unwrap(), None, sealed, size, most)
}

fn page() -> u64 {
    rustix::param::page_size() as u64
}

#[test]
fn extents_are_whole_pages_of_one_arena_file_read_only_for_others() {
    let dir = TempDir::new("arena");
    let arenas = arenas(&dir, false, 64 * page(), u64::MAX);
    let mut a = arenas.reserve(100).unwrap().unwrap();
    let b = arenas.reserve(page() + 1).unwrap().unwrap();
    assert_eq!((a.offset(), a.len()), (0, page()));
    assert_eq!((b.offset(), b.len()), (page(), 2 * page()));
    assert!(Arc::ptr_eq(a.arena(), b.arena()), "one arena");
    let path = a.arena().path().unwrap().to_owned();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), 64 * page());
    assert_eq!(meta.permissions().mode() & 0o777, 0o440);
    assert_eq!(a.unbacked(), page());
    a.back().unwrap();
    assert_eq!(a.unbacked(), 0);
    a.bytes_mut()[..5].copy_from_slice(b"hello");
    assert_eq!(&std::fs::read(&path).unwrap()[..5], b"hello", "written through the mapping");
    let usage = arenas.usage();
    assert_eq!((usage.arenas, usage.extents, usage.bytes_in_use), (1, 2, 3 * page()));
    drop(a);
    let usage = arenas.usage();
    assert_eq!((usage.extents, usage.bytes_provisioned), (1, page()), "its page stays");
    // The next extent that fits goes where pages are allocated already.
    let c = arenas.reserve(10).unwrap().unwrap();
    assert_eq!((c.offset(), c.unbacked()), (0, 0));
    drop((b, c));
    assert!(path.exists());
    assert_eq!(arenas.close(), 1);
    assert!(!path.exists(), "unlinked at close");
    assert!(matches!(arenas.reserve(1), Err(ArenaError::ShuttingDown)));
}

#[test]
fn arenas_grow_by_whole_arenas_up_to_the_most_and_a_large_table_gets_its_own() {
    let dir = TempDir::new("arena-grow");
    let arenas = arenas(&dir, false, 4 * page(), 12 * page());
    let held: Vec<Extent> = (0..4).map(|_| arenas.reserve(2 * page()).unwrap().unwrap()).collect();
    assert_eq!(arenas.usage().arenas, 2);
    let large = arenas.reserve(8 * page()).unwrap();
    assert!(large.is_none(), "12 pages at most, 8 made");
    drop(held);
    let usage = arenas.usage();
    assert_eq!((usage.bytes_free, usage.largest_free), (8 * page(), 4 * page()));
    let small = arenas.usage().arenas;
    assert_eq!(small, 2);
    let dir2 = TempDir::new("arena-large");
    let roomy =
        Arenas::new(&dir2.0, &InstanceId::random().unwrap(), None, false, 4 * page(), u64::MAX);
    let large = roomy.reserve(6 * page()).unwrap().unwrap();
    assert_eq!((large.arena().size(), large.len()), (6 * page(), 6 * page()));
}

#[test]
fn free_pages_go_back_beyond_what_is_kept_and_empty_arenas_go() {
    let dir = TempDir::new("arena-back");
    let arenas = arenas(&dir, false, 8 * page(), u64::MAX);
    let extents: Vec<Extent> =
        (0..3).map(|_| arenas.reserve(8 * page()).unwrap().unwrap()).collect();
    for extent in &extents {
        extent.back().unwrap();
    }
    let names: Vec<PathBuf> =
        extents.iter().map(|e| e.arena().path().unwrap().to_owned()).collect();
    drop(extents);
    assert_eq!(arenas.usage().bytes_provisioned, 24 * page());
    assert_eq!(arenas.give_back(u64::MAX, 8 * page()), 16 * page());
    let usage = arenas.usage();
    assert_eq!(usage.bytes_provisioned, 8 * page(), "what is kept stays");
    assert_eq!(usage.arenas, 1, "arenas with nothing allocated go");
    assert_eq!(names.iter().filter(|p| p.exists()).count(), 1);
    assert_eq!(arenas.give_back(u64::MAX, 0), 8 * page());
    assert_eq!(arenas.usage().arenas, 1, "the first stays");
    assert!(names[0].exists());
}

#[test]
fn provisioned_pages_are_allocated_ahead_and_taken_first() {
    let dir = TempDir::new("arena-provision");
    let arenas = arenas(&dir, false, 16 * page(), u64::MAX);
    assert_eq!(arenas.provision(4 * page()).unwrap(), 4 * page());
    assert_eq!(arenas.provision(4 * page()).unwrap(), 4 * page());
    assert_eq!(arenas.usage().bytes_provisioned, 8 * page());
    let extent = arenas.reserve(8 * page()).unwrap().unwrap();
    assert_eq!((extent.offset(), extent.unbacked()), (0, 0));
}

#[test]
fn sealed_arenas_are_memfds_no_one_can_resize_or_map_writable_and_go_whole() {
    let dir = TempDir::new("arena-sealed");
    let arenas = arenas(&dir, true, 8 * page(), u64::MAX);
    let mut extent = arenas.reserve(page()).unwrap().unwrap();
    extent.back().unwrap();
    extent.bytes_mut()[0] = 7;
    assert!(extent.arena().path().is_none());
    let fd = extent.arena().share().unwrap();
    let seals = rustix::fs::fcntl_get_seals(&fd).unwrap();
    assert!(seals.contains(SealFlags::GROW | SealFlags::SHRINK | SealFlags::FUTURE_WRITE));
    assert!(rustix::fs::ftruncate(&fd, 0).is_err(), "cannot shrink");
    // SAFETY: a mapping attempt that must fail; nothing is read through it.
    let writable =
        unsafe { memmap2::MmapOptions::new().len(page() as usize).map_mut(&File::from(fd)) };
    assert!(writable.is_err(), "no new writable mapping");
    assert_eq!(extent.bytes()[0], 7, "evshmd's own mapping still writes");
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 0, "no file");
    let arena = Arc::clone(extent.arena());
    drop(extent);
    assert_eq!(arenas.give_back(u64::MAX, 0), page(), "a whole free arena");
    assert!(arena.is_dropped());
}

#[test]
fn a_changed_arena_file_is_retired() {
    let dir = TempDir::new("arena-changed");
    let arenas = arenas(&dir, false, 4 * page(), u64::MAX);
    let extent = arenas.reserve(page()).unwrap().unwrap();
    assert!(extent.arena().check_intact() && extent.arena().is_servable());
    let path = extent.arena().path().unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(!extent.arena().check_intact());
    assert!(!extent.arena().is_servable());
    let next = arenas.reserve(page()).unwrap().unwrap();
    assert!(!Arc::ptr_eq(next.arena(), extent.arena()), "nothing new goes in a retired arena");
}
