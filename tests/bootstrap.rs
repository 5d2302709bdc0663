//! The bootstrap's data step, as a user without a mirror meets it: CosmosQA's dev split is downloaded into
//! the cache and checked against its published hash; a wrong file is refused and nothing is left behind.
//! Served from a local HTTP server (the real address needs the internet); torch and MiniLM come from the
//! real cache through symlinks, so only the data step runs.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `python3 -m http.server` on a free loopback port, serving `dir`.
fn serve(dir: &Path) -> (Server, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("python3")
        .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let server = Server(child);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (server, format!("http://127.0.0.1:{port}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the local HTTP server did not start");
}

/// A cache whose torch venv and MiniLM are the real cache's (symlinked), with no data yet.
fn cache_with_real_tools() -> (tempfile::TempDir, PathBuf) {
    let real = PathBuf::from(std::env::var_os("HSX_CACHE").unwrap_or_else(|| {
        panic!("HSX_CACHE is not set: run the tests with `make test`, which bootstraps the cache and exports it")
    }));
    assert!(
        real.join("venv/bin/python").exists(),
        "{} has no venv: run `make test` (it runs the bootstrap)",
        real.display()
    );
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    std::fs::create_dir_all(cache.join("models")).unwrap();
    std::os::unix::fs::symlink(real.join("venv"), cache.join("venv")).unwrap();
    std::os::unix::fs::symlink(real.join("models/all-MiniLM-L6-v2"), cache.join("models/all-MiniLM-L6-v2")).unwrap();
    (t, cache)
}

fn bootstrap(cache: &Path, url: &str) -> std::process::Output {
    Command::new(common::repo_path("scripts/bootstrap.sh"))
        .env("HSX_CACHE", cache)
        .env_remove("HSX_DATA_MIRROR")
        .env("HSX_COSMOSQA_BASE_URL", url)
        .output()
        .unwrap()
}

#[test]
fn bootstrap_downloads_the_dev_split_and_checks_its_hash() {
    let (_t, cache) = cache_with_real_tools();
    let (_server, url) = serve(&common::mirror().join("cosmosqa"));
    let o = bootstrap(&cache, &url);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = cache.join("data/cosmosqa/valid.csv");
    let (_, sha) = hsx::ledger::files::hash_file(&got).unwrap();
    assert_eq!(Some(sha.as_str()), hsx::data::known_hash("valid.csv"));
    // Idempotent: a second call downloads nothing and says nothing.
    drop(_server);
    let again = bootstrap(&cache, "http://127.0.0.1:9");
    assert!(again.status.success() && again.stderr.is_empty(), "{}", String::from_utf8_lossy(&again.stderr));
}

#[test]
fn bootstrap_refuses_a_dev_split_with_the_wrong_hash() {
    let (t, cache) = cache_with_real_tools();
    let served = t.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    let mut bytes = std::fs::read(common::mirror().join("cosmosqa/valid.csv")).unwrap();
    bytes.extend_from_slice(b"x,y\n");
    std::fs::write(served.join("valid.csv"), bytes).unwrap();
    let (_server, url) = serve(&served);
    let o = bootstrap(&cache, &url);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a modified valid.csv was accepted");
    assert!(err.contains("sha256") && err.contains("refusing"), "{err}");
    let left: Vec<_> =
        std::fs::read_dir(cache.join("data/cosmosqa")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}

#[test]
fn bootstrap_names_a_mirror_without_the_data() {
    let (t, cache) = cache_with_real_tools();
    let o = Command::new(common::repo_path("scripts/bootstrap.sh"))
        .env("HSX_CACHE", &cache)
        .env("HSX_DATA_MIRROR", t.path().join("empty"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("HSX_DATA_MIRROR") && err.contains("cosmosqa/valid.csv"), "{err}");
}
