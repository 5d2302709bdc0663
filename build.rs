//! Build script: compiles the small C++ shim (`src/shim/torch_shim.cpp`) for the two libtorch controls
//! that `tch` does not bind — deterministic algorithms and ATen's CPU capability — and embeds an rpath to
//! the libtorch directory so the binary runs with no `LD_LIBRARY_PATH`.
//!
//! `torch-sys` (links = "tch") prints `cargo:libtorch_lib=<dir>`; cargo hands it to direct dependents
//! as `DEP_TCH_LIBTORCH_LIB`. That is why `torch-sys` is a direct dependency of hsx.
use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/shim/torch_shim.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-changed=Cargo.lock");
    // Recorded in every ledger entry: the compiler and the exact dependency set this binary was built with.
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=HSX_RUSTC_VERSION={rustc_version}");
    let lock_sha = std::fs::read("Cargo.lock")
        .map(|b| {
            use std::fmt::Write;
            let digest = sha256(&b);
            digest.iter().fold(String::new(), |mut s, x| {
                let _ = write!(s, "{x:02x}");
                s
            })
        })
        .unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=HSX_CARGO_LOCK_SHA256={lock_sha}");
    let lib_dir = match env::var("DEP_TCH_LIBTORCH_LIB") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => {
            println!(
                "cargo:warning=torch-sys did not report its libtorch directory; \
                 run the build through `make build` (scripts/bootstrap.sh sets up libtorch)"
            );
            std::process::exit(1);
        }
    };
    let torch_root = lib_dir.parent().map(PathBuf::from).unwrap_or_else(|| lib_dir.clone());
    let include = torch_root.join("include");
    let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    cc::Build::new()
        .cpp(true)
        .file("src/shim/torch_shim.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-w")
        .compile("hsx_torch_shim");
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    // Every artifact of this crate (binary, tests, benches) finds libtorch through its rpath.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).to_vec()
}
