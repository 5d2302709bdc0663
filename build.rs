//! Build script: compiles the small C++ shim (`src/shim/`: the libtorch controls and facts that `tch` does
//! not bind, and the portable linear layer's autograd node) and embeds an rpath to
//! the libtorch directory so the binary runs with no `LD_LIBRARY_PATH`.
//!
//! `torch-sys` (links = "tch") prints `cargo:libtorch_lib=<dir>`; cargo hands it to direct dependents
//! as `DEP_TCH_LIBTORCH_LIB`. That is why `torch-sys` is a direct dependency of hsx.
//!
//! It also writes `$OUT_DIR/code_files.rs`: the SHA-256 of every file the binary is built from (`src/`,
//! `templates/`, `Cargo.toml`, `Cargo.lock`, `build.rs`). `crate::stages::code` derives each stage's code
//! identity from it, the resume key that replaced the git commit. Because any source edit re-runs this
//! script, the C++ shim is recompiled only when its source, flags or libtorch headers' directory change
//! (a stamp in `$OUT_DIR`).
use std::env;
use std::path::{Path, PathBuf};

/// The files whose bytes make up the binary, relative to the crate root, in the order they are hashed.
const CODE_ROOTS: [&str; 5] = ["src", "templates", "Cargo.toml", "Cargo.lock", "build.rs"];
const CODE_EXTENSIONS: [&str; 6] = ["rs", "cpp", "h", "hpp", "j2", "toml"];
/// The C++ shim's sources: libtorch controls and facts, and the portable linear layer's autograd node.
const SHIM_FILES: [&str; 2] = ["src/shim/torch_shim.cpp", "src/shim/portable_linear.cpp"];

fn main() {
    for file in SHIM_FILES {
        println!("cargo:rerun-if-changed={file}");
    }
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-changed=Cargo.lock");
    for root in CODE_ROOTS {
        println!("cargo:rerun-if-changed={root}");
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    write_code_files(&out_dir);
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
    let lock_sha = std::fs::read("Cargo.lock").map(|b| hex(&sha256(&b))).unwrap_or_else(|_| "unknown".into());
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
    println!("cargo:rerun-if-env-changed=CXX");
    println!("cargo:rerun-if-env-changed=CXXFLAGS");
    let stamp_path = out_dir.join("hsx_torch_shim.stamp");
    let stamp = {
        let mut b = Vec::new();
        for file in SHIM_FILES {
            b.extend_from_slice(&std::fs::read(file).unwrap_or_default());
            b.push(0);
        }
        for part in [
            include.display().to_string(),
            abi.clone(),
            env::var("CXX").unwrap_or_default(),
            env::var("CXXFLAGS").unwrap_or_default(),
            "-fopenmp".to_owned(),
        ] {
            b.push(0);
            b.extend_from_slice(part.as_bytes());
        }
        hex(&sha256(&b))
    };
    let archive = out_dir.join("libhsx_torch_shim.a");
    if archive.exists() && std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str()) {
        // What cc::Build::compile prints for a C++ static library on this target.
        println!("cargo:rustc-link-search=native={}", out_dir.display());
        println!("cargo:rustc-link-lib=static=hsx_torch_shim");
        println!("cargo:rustc-link-lib=stdc++");
        println!("cargo:rustc-link-lib=gomp");
    } else {
        compile_shim(&include, &abi);
        std::fs::write(&stamp_path, &stamp).expect("write the shim's stamp in OUT_DIR");
    }
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    // Every artifact of this crate (binary, tests, benches) finds libtorch through its rpath.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
}

fn compile_shim(include: &Path, abi: &str) {
    cc::Build::new()
        .cpp(true)
        .files(SHIM_FILES)
        .include(include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-w")
        // at::parallel_for is a header template whose OpenMP pragma is compiled here: without -fopenmp it
        // runs serially. libgomp.so.1 resolves at run time to the one libtorch loads (the rpath).
        .flag("-fopenmp")
        .compile("hsx_torch_shim");
    println!("cargo:rustc-link-lib=gomp");
}

/// Writes `CODE_FILES: &[(&str, &str)]`, (path, sha256 hex) sorted by path, into `$OUT_DIR/code_files.rs`.
fn write_code_files(out_dir: &Path) {
    let mut files = Vec::new();
    for root in CODE_ROOTS {
        collect(Path::new(root), &mut files);
    }
    files.sort();
    let mut src =
        String::from("/// Every file the binary is built from: (path relative to the crate root, SHA-256 hex).\n");
    src.push_str("pub const CODE_FILES: &[(&str, &str)] = &[\n");
    for path in &files {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let rel = path.to_string_lossy().replace('\\', "/");
        src.push_str(&format!("    ({rel:?}, {:?}),\n", hex(&sha256(&bytes))));
    }
    src.push_str("];\n");
    std::fs::write(out_dir.join("code_files.rs"), src).expect("write code_files.rs in OUT_DIR");
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let Ok(rd) = std::fs::read_dir(path) else { return };
        for e in rd.flatten() {
            collect(&e.path(), out);
        }
    } else if path.is_file() {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let top = path.components().count() == 1;
        if top || CODE_EXTENSIONS.contains(&ext) {
            out.push(path.to_path_buf());
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).to_vec()
}
