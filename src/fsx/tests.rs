use super::*;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn mkfifo(p: &Path) {
    rustix::fs::mknodat(rustix::fs::CWD, p, FileType::Fifo, Mode::from_bits_truncate(0o600), 0).unwrap();
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp."))
        .collect()
}

#[test]
fn a_write_creates_directories_replaces_atomically_and_leaves_no_temporary_file() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let p = root.join("a/b/c.json");
    write(root, &p, b"one").unwrap();
    write(root, &p, b"two").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"two");
    assert!(leftovers(&root.join("a/b")).is_empty());
    // An existing file keeps its mode exactly.
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o444)).unwrap();
    write(root, &p, b"three").unwrap();
    assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o444);
    // A failing writer replaces nothing and leaves nothing.
    let r: Result<(), FsError> = write_with(root, &p, |w| {
        w.write_all(b"partial").map_err(|e| FsError::io(&p, e))?;
        Err(FsError::refused(&p, "the writer gave up"))
    });
    assert!(r.is_err());
    assert_eq!(std::fs::read(&p).unwrap(), b"three");
    assert!(leftovers(&root.join("a/b")).is_empty());
}

#[test]
fn temporary_names_cannot_be_predicted() {
    let a = temp_name(OsStr::new("ledger.json"));
    let b = temp_name(OsStr::new("ledger.json"));
    assert_ne!(a, b);
    let suffix = a.to_string_lossy().strip_prefix(".ledger.json.tmp.").map(str::to_owned).unwrap();
    assert!(suffix.len() == 16 && suffix.chars().all(|c| c.is_ascii_hexdigit()), "{a:?}");
}

#[test]
fn dot_dot_a_symlinked_directory_a_symlinked_or_hard_linked_destination_are_refused_and_the_outside_untouched() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("run");
    let outside = d.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("victim"), "keep").unwrap();

    let e = write(&root, &root.join("../outside/victim"), b"x").unwrap_err();
    assert!(e.to_string().contains("'..'"), "{e}");

    std::os::unix::fs::symlink(&outside, root.join("stage")).unwrap();
    let e = write(&root, &root.join("stage/victim"), b"x").unwrap_err();
    assert!(e.to_string().contains("is a symbolic link") && e.to_string().contains("stage"), "{e}");
    let e = create_dirs(&root, &root.join("stage/sub")).unwrap_err();
    assert!(matches!(e, FsError::Refused { .. }), "{e}");
    assert!(!outside.join("sub").exists());

    std::os::unix::fs::symlink(outside.join("victim"), root.join("out.json")).unwrap();
    let e = write(&root, &root.join("out.json"), b"x").unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    assert!(std::fs::symlink_metadata(root.join("out.json")).unwrap().file_type().is_symlink());

    std::fs::hard_link(outside.join("victim"), root.join("hard.json")).unwrap();
    let e = write(&root, &root.join("hard.json"), b"x").unwrap_err();
    assert!(e.to_string().contains("hard link"), "{e}");
    let e = place_file(&root, &root.join("hard.json"), |p| std::fs::write(p, "x").map_err(|e| FsError::io(p, e)))
        .unwrap_err();
    assert!(e.to_string().contains("hard link"), "{e}");

    assert_eq!(std::fs::read_to_string(outside.join("victim")).unwrap(), "keep");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    assert!(leftovers(&root).is_empty());
}

#[test]
fn a_path_only_writer_writes_through_a_private_directory_and_its_file_is_moved_in() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let p = root.join("plots/a.png");
    let seen = place_file(root, &p, |at| {
        std::fs::write(at, "png").map_err(|e| FsError::io(at, e))?;
        Ok::<_, FsError>(at.to_owned())
    })
    .unwrap();
    assert!(!seen.starts_with(root.join("plots/a.png")));
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "png");
    assert_eq!(std::fs::read_dir(root.join("plots")).unwrap().count(), 1, "the private directory is gone");
    // A writer that leaves a symlink instead of a file is refused.
    let e = place_file(root, &p, |at| std::os::unix::fs::symlink("/etc/passwd", at).map_err(|e| FsError::io(at, e)))
        .unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "png");
    assert_eq!(std::fs::read_dir(root.join("plots")).unwrap().count(), 1);
}

#[test]
fn a_new_file_is_never_replaced_and_gets_its_mode() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("key.pem");
    write_opts(d.path(), &p, b"secret", WriteOptions { mode: Some(0o600), create_new: true }).unwrap();
    assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
    let e = write_opts(d.path(), &p, b"other", WriteOptions { mode: Some(0o600), create_new: true }).unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    assert_eq!(std::fs::read(&p).unwrap(), b"secret");
    assert!(leftovers(d.path()).is_empty());
}

#[test]
fn lock_files_that_are_links_or_not_regular_are_refused_and_their_targets_untouched() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    std::fs::write(root.join("victim"), "keep").unwrap();
    std::os::unix::fs::symlink(root.join("victim"), root.join("a.lock")).unwrap();
    let e = lock(root, &root.join("a.lock")).unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    std::fs::hard_link(root.join("victim"), root.join("b.lock")).unwrap();
    let e = lock(root, &root.join("b.lock")).unwrap_err();
    assert!(e.to_string().contains("hard link"), "{e}");
    mkfifo(&root.join("c.lock"));
    let e = lock(root, &root.join("c.lock")).unwrap_err();
    assert!(e.to_string().contains("FIFO"), "{e}");
    std::fs::create_dir(root.join("d.lock")).unwrap();
    assert!(lock(root, &root.join("d.lock")).is_err());
    assert_eq!(std::fs::read_to_string(root.join("victim")).unwrap(), "keep");
    let f = lock(root, &root.join("ok.lock")).unwrap();
    assert!(f.metadata().unwrap().is_file());
}

#[test]
fn reads_refuse_fifos_devices_links_below_the_root_and_files_over_their_limit() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    mkfifo(&root.join("fifo"));
    std::os::unix::fs::symlink("/dev/zero", root.join("zero")).unwrap();
    std::fs::write(root.join("big"), vec![b'x'; 100]).unwrap();
    std::os::unix::fs::symlink(root.join("big"), root.join("link")).unwrap();
    let small = Limit::new("a test file", 10);
    let e = read(root, &root.join("fifo"), small).unwrap_err();
    assert!(e.to_string().contains("FIFO"), "{e}");
    let e = read_file(&root.join("fifo"), small).unwrap_err();
    assert!(e.to_string().contains("FIFO"), "{e}");
    let e = read_file(&root.join("zero"), Limit::JSON).unwrap_err();
    assert!(e.to_string().contains("device"), "{e}");
    let e = read(root, &root.join("zero"), Limit::JSON).unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    let e = read(root, &root.join("big"), small).unwrap_err();
    assert!(matches!(e, FsError::TooLarge { size: 100, limit: 10, .. }), "{e}");
    assert!(read_file(&root.join("link"), Limit::new("x", 100)).is_ok(), "a user-named link is followed");
    assert!(read(root, &root.join("../x"), small).unwrap_err().to_string().contains("'..'"));
    assert!(read(root, &root.join("absent"), small).unwrap_err().is_not_found());
}

#[test]
fn a_bounded_reader_stops_one_byte_past_its_limit() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("f");
    std::fs::write(&p, vec![b'x'; 10]).unwrap();
    let mut r = open_file(&p, Limit::new("x", 10)).unwrap();
    // The file grows after it was opened.
    std::fs::OpenOptions::new().append(true).open(&p).unwrap().write_all(b"more").unwrap();
    let mut out = Vec::new();
    let e = std::io::Read::read_to_end(&mut r, &mut out).unwrap_err();
    assert!(e.to_string().contains("limit"), "{e}");
    assert!(out.len() <= 11);
}

#[test]
fn copy_and_remove_stay_below_their_roots() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::write(a.join("f"), "data").unwrap();
    assert_eq!(copy(&a, &a.join("f"), Limit::ARTIFACT, &b, &b.join("x/f")).unwrap(), 4);
    assert_eq!(std::fs::read_to_string(b.join("x/f")).unwrap(), "data");
    assert!(remove_file(&b, &b.join("x/f")).unwrap());
    assert!(!remove_file(&b, &b.join("x/f")).unwrap());
    assert!(remove_file(&b, &b.join("../a/f")).is_err());
    assert!(a.join("f").exists());
}
