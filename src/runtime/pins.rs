//! Portable CPU pins.
//!
//! libtorch picks its CPU kernels by processor: ATen dispatches to its AVX-512, AVX2 or baseline kernels,
//! MKL picks its own code path, oneDNN its instruction set. Each choice moves the low bits of a float
//! result, so weights trained on an AVX-512 Xeon differ from those trained on an AVX2 EPYC. The pins
//! ([`PORTABLE_PINS`]) fix every such choice through the libraries' own environment variables: ATen and
//! oneDNN at the AVX2 level (Intel Haswell, 2013, and AMD Excavator, 2015, onwards), MKL at its
//! COMPATIBLE branch (the one branch MKL runs on Intel and non-Intel processors alike). The libraries read these once, when
//! they first run (libgomp: when it is loaded, before `main`), so [`pin_process_start`] — the first
//! thing the `hsx` binary does — re-executes the binary with the pinned environment when it is not
//! already in place. `HSX_CPU_PINS` chooses the mode: `portable` (the default), `native` (no pins; the
//! outer environment passes through, and is recorded), or `explicit` (the environment's values are used
//! as given: how `reproduce` applies a recording's settings, see [`recorded_pins`]).
use serde::Serialize;
use std::collections::BTreeMap;

use std::os::raw::{c_char, c_int};

// The shim's (`src/shim/torch_shim.cpp`) controls and facts that decide CPU kernels.
extern "C" {
    fn hsx_cpu_capability(buf: *mut c_char, len: usize) -> c_int;
    fn hsx_mkl_cbwr_get(option: c_int) -> c_int;
    fn hsx_mkl_cbwr_set(settings: c_int) -> c_int;
    fn hsx_mkl_cbwr_auto_branch() -> c_int;
    fn hsx_float32_matmul_precision() -> c_int;
    fn hsx_glibc_version() -> *const c_char;
}

/// ATen's CPU capability as libtorch reports it ("AVX512", "AVX2", "DEFAULT", ...).
pub fn cpu_capability() -> String {
    let mut buf = [0 as c_char; 64];
    // SAFETY: the shim writes at most `len` bytes including the terminating NUL.
    let n = unsafe { hsx_cpu_capability(buf.as_mut_ptr(), buf.len()) };
    if n < 0 {
        return "unknown".to_owned();
    }
    let bytes: Vec<u8> = buf[..n as usize].iter().map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What the ledger records about the CPU pins: the mode, every pinned variable as this process saw it,
/// what MKL reports in effect, and the remaining facts that decide bits on a CPU (scalar libm, features).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct CpuPinFacts {
    /// portable | native | explicit (see `HSX_CPU_PINS`).
    pub mode: String,
    /// Each pinned variable's value in this process (null: unset).
    pub settings: BTreeMap<String, Option<String>>,
    /// Contrary outer settings the portable pins replaced, as `VAR=value`.
    pub overridden: Vec<String>,
    /// MKL's CNR setting in effect, as MKL reports it ("AVX2,STRICT"); null without MKL.
    pub mkl_cbwr: Option<String>,
    /// The branch MKL would choose on this processor unpinned (a fact about the CPU).
    pub mkl_native_branch: Option<String>,
    /// torch.get_float32_matmul_precision().
    pub float32_matmul_precision: String,
    /// glibc's version: its libm computes scalar exp/log/tanh (Rust's f64 maths and ATen's scalar paths).
    pub glibc: String,
    /// The x86 features that decide which kernels exist on this CPU.
    pub cpu_features: Vec<String>,
}

/// The environment variable that chooses the pin mode.
pub const PIN_MODE_VAR: &str = "HSX_CPU_PINS";
/// Set by the re-execution to the outer settings it replaced (also its loop guard).
const OVERRODE_VAR: &str = "HSX_CPU_PINS_OVERRODE";

/// The portable pins: each processor-dependent numerical path of libtorch at the AVX2 level, by the
/// variable its library reads at start-up. Chosen by measurement (benches/RESULTS.md, "CPU pins").
pub const PORTABLE_PINS: [(&str, &str); 7] = [
    // ATen's kernel dispatch (vectorised reductions, Sleef exp/tanh/log): its AVX2 kernels.
    ("ATEN_CPU_CAPABILITY", "avx2"),
    // MKL's conditional numerical reproducibility (CNR), strict. Its only branch that MKL runs on both
    // Intel and other x86-64 processors is COMPATIBLE: on an AMD EPYC, MKL 2024.2 replaces every named
    // branch (SSE2 ... AVX2, AVX512) with AUTO, its own per-processor choice (measured: mkl_cbwr_get).
    ("MKL_CBWR", "COMPATIBLE,STRICT"),
    // MKL must not vary its thread count with load.
    ("MKL_DYNAMIC", "FALSE"),
    // oneDNN's JIT kernels: at most AVX2, strict fp32 maths (no implicit bf16/tf32 down-conversion).
    ("ONEDNN_MAX_CPU_ISA", "AVX2"),
    ("ONEDNN_DEFAULT_FPMATH_MODE", "STRICT"),
    // OpenMP (libgomp, read when it is loaded): a fixed team size, never adjusted to load.
    ("OMP_DYNAMIC", "FALSE"),
    // The tokenizer's rayon pool: sequential (its trainer's float sums otherwise depend on cores).
    ("TOKENIZERS_PARALLELISM", "false"),
];

/// Other variables that could move bits: recorded as seen (thread counts are set by hsx itself through
/// libtorch, which overrides them; these show what the outer environment asked for).
const RECORDED_VARS: [&str; 4] = ["OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_ENABLE_INSTRUCTIONS", "RAYON_NUM_THREADS"];

/// The pin mode of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinMode {
    Portable,
    Native,
    Explicit,
}

impl PinMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PinMode::Portable => "portable",
            PinMode::Native => "native",
            PinMode::Explicit => "explicit",
        }
    }
}

/// Reads `HSX_CPU_PINS`; an unknown value is an error naming the variable and the values it takes.
pub fn pin_mode() -> Result<PinMode, String> {
    match std::env::var(PIN_MODE_VAR) {
        Err(std::env::VarError::NotPresent) => Ok(PinMode::Portable),
        Ok(v) if v.is_empty() || v == "portable" => Ok(PinMode::Portable),
        Ok(v) if v == "native" => Ok(PinMode::Native),
        Ok(v) if v == "explicit" => Ok(PinMode::Explicit),
        Ok(v) => Err(format!("{PIN_MODE_VAR}={v:?} is not a pin mode: use portable (the default), native or explicit")),
        Err(_) => Err(format!("{PIN_MODE_VAR} is not valid UTF-8: use portable (the default), native or explicit")),
    }
}

/// The portable pins whose variable differs in this process's environment.
fn portable_pins_missing() -> Vec<(&'static str, &'static str)> {
    PORTABLE_PINS.iter().copied().filter(|(k, v)| std::env::var(k).ok().as_deref() != Some(*v)).collect()
}

/// What [`pin_process_start`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPins {
    /// The environment already held the pins (or the mode is native/explicit): nothing to do.
    InPlace,
    /// Re-execution failed; the pins were set in this process instead (checked later by
    /// [`check_pins`] against what the libraries report).
    SetInProcess(String),
}

/// The first call of the `hsx` binary, before anything touches libtorch: in portable mode, when the
/// environment lacks a pin (or holds a contrary value), re-executes this binary with the pins set, so
/// each library reads its pinned value however early it initialises. Does not return when it
/// re-executes. Contrary outer settings are replaced, and named in the record (`overridden`) and on
/// stderr with `-v`. Err: `HSX_CPU_PINS` holds an unknown mode.
pub fn pin_process_start() -> Result<StartPins, String> {
    if pin_mode()? != PinMode::Portable {
        return Ok(StartPins::InPlace);
    }
    let missing = portable_pins_missing();
    if missing.is_empty() {
        return Ok(StartPins::InPlace);
    }
    let overrode: Vec<String> = missing
        .iter()
        .map(|(k, _)| match std::env::var(k) {
            Ok(v) => format!("{k}={v}"),
            Err(_) => k.to_string(),
        })
        .collect();
    if std::env::var_os(OVERRODE_VAR).is_none() {
        if let Ok(exe) = std::env::current_exe() {
            use std::os::unix::process::CommandExt;
            let mut args = std::env::args_os();
            let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
            let mut cmd = std::process::Command::new(&exe);
            cmd.arg0(arg0).args(args);
            for (k, v) in PORTABLE_PINS {
                cmd.env(k, v);
            }
            cmd.env(OVERRODE_VAR, overrode.iter().filter(|o| o.contains('=')).cloned().collect::<Vec<_>>().join(";"));
            // Only returns on failure.
            let err = cmd.exec();
            return Ok(start_in_process(&format!("re-executing {} failed ({err})", exe.display())));
        }
    }
    Ok(start_in_process("the pins were not in place after re-execution"))
}

fn start_in_process(why: &str) -> StartPins {
    for (k, v) in PORTABLE_PINS {
        // SAFETY: called at start-up, before any other thread exists or libtorch reads the environment.
        unsafe { std::env::set_var(k, v) };
    }
    StartPins::SetInProcess(why.to_owned())
}

/// The outer settings the re-execution replaced (from its marker variable).
pub fn overridden() -> Vec<String> {
    std::env::var(OVERRODE_VAR)
        .ok()
        .map(|s| s.split(';').filter(|x| !x.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default()
}

const MKL_CBWR_STRICT: i32 = 0x10000;
const MKL_BRANCHES: [(i32, &str); 14] = [
    (0, "OFF"),
    (1, "BRANCH_OFF"),
    (2, "AUTO"),
    (3, "COMPATIBLE"),
    (4, "SSE2"),
    (5, "SSE3"),
    (6, "SSSE3"),
    (7, "SSE4_1"),
    (8, "SSE4_2"),
    (9, "AVX"),
    (10, "AVX2"),
    (11, "AVX512_MIC"),
    (12, "AVX512"),
    (14, "AVX512_E1"),
];

/// MKL's numeric CNR setting from its `MKL_CBWR` spelling ("AVX2,STRICT"); None if not one.
pub fn mkl_cbwr_code(s: &str) -> Option<i32> {
    let mut code = 0;
    let mut branch = false;
    for part in s.split(',').map(str::trim) {
        if part.eq_ignore_ascii_case("STRICT") {
            code |= MKL_CBWR_STRICT;
        } else if let Some((c, _)) = MKL_BRANCHES.iter().find(|(_, n)| n.eq_ignore_ascii_case(part)) {
            if branch {
                return None;
            }
            branch = true;
            code |= c;
        } else {
            return None;
        }
    }
    branch.then_some(code)
}

/// `MKL_CBWR` spelling of MKL's numeric setting.
pub fn mkl_cbwr_name(code: i32) -> String {
    let branch = code & !MKL_CBWR_STRICT;
    let name = MKL_BRANCHES
        .iter()
        .find(|(c, _)| *c == branch)
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| format!("branch {branch}"));
    if code & MKL_CBWR_STRICT != 0 {
        format!("{name},STRICT")
    } else {
        name
    }
}

/// MKL's CNR setting in effect (branch and STRICT), or None when this libtorch has no MKL.
pub fn mkl_cbwr_in_effect() -> Option<i32> {
    // SAFETY: a lookup of MKL's exported service function and a read of its setting.
    let c = unsafe { hsx_mkl_cbwr_get(-1) };
    (c >= 0).then_some(c)
}

fn mkl_native_branch() -> Option<String> {
    // SAFETY: as above.
    let c = unsafe { hsx_mkl_cbwr_auto_branch() };
    (c >= 0).then(|| mkl_cbwr_name(c))
}

fn cpu_features() -> Vec<String> {
    let mut f = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! feat {
            ($($name:tt),*) => {$(if std::arch::is_x86_feature_detected!($name) { f.push($name.to_string()); })*};
        }
        feat!(
            "sse4.2",
            "avx",
            "fma",
            "avx2",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512dq",
            "avx512bf16",
            "avx512vnni"
        );
    }
    f
}

/// The ATen capability a pinned `ATEN_CPU_CAPABILITY` value yields on this CPU: the pinned level, or
/// the baseline when the CPU lacks its instructions.
fn expected_aten_capability(pinned: &str) -> String {
    let has = |x: &str| cpu_features().iter().any(|f| f == x);
    match pinned.to_ascii_lowercase().as_str() {
        "avx2" if has("avx2") && has("fma") => "AVX2".into(),
        "avx512" if has("avx512f") && has("avx512bw") && has("avx512vl") && has("avx512dq") => "AVX512".into(),
        _ => "DEFAULT".into(),
    }
}

/// The CPU-pin facts of this process, as recorded in each entry.
pub fn pin_facts() -> CpuPinFacts {
    let mode = pin_mode().map(PinMode::as_str).unwrap_or("invalid").to_owned();
    let settings = PORTABLE_PINS
        .iter()
        .map(|(k, _)| *k)
        .chain(RECORDED_VARS)
        .map(|k| (k.to_owned(), std::env::var(k).ok()))
        .collect();
    // SAFETY: a pointer to glibc's static version string.
    let glibc = unsafe {
        let p = hsx_glibc_version();
        if p.is_null() {
            "unknown".to_owned()
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    // SAFETY: a read of libtorch's global context.
    let precision = match unsafe { hsx_float32_matmul_precision() } {
        0 => "highest",
        1 => "high",
        2 => "medium",
        _ => "unknown",
    };
    CpuPinFacts {
        mode,
        settings,
        overridden: overridden(),
        mkl_cbwr: mkl_cbwr_in_effect().map(mkl_cbwr_name),
        mkl_native_branch: mkl_native_branch(),
        float32_matmul_precision: precision.to_owned(),
        glibc,
        cpu_features: cpu_features(),
    }
}

/// Checks that the pins of this process's mode are in effect in the libraries themselves, not just in
/// the environment: ATen's dispatch level and MKL's CNR setting. A library caller that did not start
/// through the `hsx` binary gets the pins set here, which works when libtorch has not run yet. Err names
/// the setting that did not take and what to do. Native mode checks nothing (it is recorded as such).
pub fn check_pins() -> Result<(), String> {
    let mode = pin_mode()?;
    if mode == PinMode::Native {
        return Ok(());
    }
    if mode == PinMode::Portable {
        for (k, v) in portable_pins_missing() {
            // SAFETY: hsx sets its pins before its stages start threads of their own.
            unsafe { std::env::set_var(k, v) };
        }
    }
    if let Ok(want) = std::env::var("ATEN_CPU_CAPABILITY") {
        let expected = expected_aten_capability(&want);
        let now = cpu_capability();
        if now != expected {
            return Err(format!(
                "ATen dispatches to its {now} kernels, but ATEN_CPU_CAPABILITY={want} asks for {expected} on this CPU: \
                 libtorch chose its kernels before hsx could pin them. Start libtorch work only after \
                 hsx::runtime::set_deterministic, or set {PIN_MODE_VAR}=native to run unpinned (recorded as such)"
            ));
        }
    }
    if let Ok(want) = std::env::var("MKL_CBWR") {
        let Some(code) = mkl_cbwr_code(&want) else {
            return Err(format!("MKL_CBWR={want:?} is not an MKL CNR setting (e.g. AVX2,STRICT)"));
        };
        if let Some(now) = mkl_cbwr_in_effect() {
            if now != code {
                // SAFETY: MKL's own setter; it refuses (-8) once MKL has run.
                let rc = unsafe { hsx_mkl_cbwr_set(code) };
                let after = mkl_cbwr_in_effect();
                if rc != 0 || after != Some(code) {
                    let why = if rc == -3 {
                        "this processor does not support that branch (MKL runs named branches on Intel processors only; COMPATIBLE runs everywhere)"
                    } else {
                        "MKL ran before hsx could pin it"
                    };
                    return Err(format!(
                        "MKL runs its {} code path, but MKL_CBWR={want} is pinned and MKL refused the change \
                         (code {rc}): {why}. Set {PIN_MODE_VAR}=native to run unpinned",
                        mkl_cbwr_name(now)
                    ));
                }
            }
        }
    }
    Ok(())
}

/// How `reproduce` stands with the CPU settings a recording was made under.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordedPins {
    /// This process runs with the recorded pinned settings.
    InEffect,
    /// The recording predates the pins: its kernels were its own CPU's choice (ATen's named here), so a
    /// CPU of another family may not reproduce its bits.
    Unpinned { cpu_capability: String },
    /// This process runs with other settings: re-run with `env` (see [`restart_with`]).
    Restart { env: Vec<(String, Option<String>)>, differences: Vec<String> },
}

/// A recorded pin value is used only if it is a short word of `[A-Za-z0-9_,.-]`: a ledger is untrusted
/// input, and these values become environment variables.
fn safe_pin_value(v: &str) -> bool {
    !v.is_empty() && v.len() <= 32 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"_,.-".contains(&b))
}

/// Compares the CPU settings recorded in an entry's `env.torch` (the recording's `runtime::facts()`)
/// with this process's. Only the pin variables are read, and only safe values. Err: the recorded pins
/// are malformed (named).
pub fn recorded_pins(recorded_torch: &serde_json::Value) -> Result<RecordedPins, String> {
    let Some(pins) = recorded_torch.get("cpu_pins").filter(|v| !v.is_null()) else {
        let cap = recorded_torch.get("cpu_capability").and_then(|v| v.as_str()).unwrap_or("unknown");
        return Ok(RecordedPins::Unpinned { cpu_capability: cap.to_owned() });
    };
    let settings = pins
        .get("settings")
        .and_then(|v| v.as_object())
        .ok_or("the recorded env.torch.cpu_pins has no settings object")?;
    let mut env = Vec::new();
    let mut differences = Vec::new();
    for (k, _) in PORTABLE_PINS {
        let recorded = match settings.get(k) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(v)) if safe_pin_value(v) => Some(v.clone()),
            Some(other) => {
                return Err(format!("the recorded env.torch.cpu_pins.settings.{k} is not a pin value: {other}"))
            }
        };
        let now = std::env::var(k).ok();
        if recorded != now {
            let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "unset".into());
            differences.push(format!("{k}: recorded {}, now {}", show(&recorded), show(&now)));
        }
        env.push((k.to_owned(), recorded));
    }
    Ok(if differences.is_empty() { RecordedPins::InEffect } else { RecordedPins::Restart { env, differences } })
}

/// The CPU-pin facts that differ between a recording's `env.torch` and this process's, as
/// "torch.cpu_pins.<key>: recorded X, now Y" (for `reproduce`'s environment report).
pub fn pin_differences(recorded_torch: &serde_json::Value, now_torch: &serde_json::Value) -> Vec<String> {
    let (r, n) = (&recorded_torch["cpu_pins"], &now_torch["cpu_pins"]);
    if r.is_null() {
        return vec![format!(
            "torch.cpu_pins: the recording predates the CPU pins (its kernels were its CPU's own choice: ATen {}), so another CPU family may not reproduce its bytes",
            recorded_torch["cpu_capability"]
        )];
    }
    let mut out = Vec::new();
    let mut keys: Vec<String> =
        vec!["mode".into(), "mkl_cbwr".into(), "float32_matmul_precision".into(), "glibc".into()];
    keys.extend(PORTABLE_PINS.iter().map(|(k, _)| format!("settings/{k}")));
    for k in keys {
        let p = format!("/{k}");
        let (a, b) =
            (r.pointer(&p).unwrap_or(&serde_json::Value::Null), n.pointer(&p).unwrap_or(&serde_json::Value::Null));
        if a != b {
            out.push(format!("torch.cpu_pins.{}: recorded {a}, now {b}", k.replace('/', ".")));
        }
    }
    out
}

/// Re-executes this binary with `env` applied in `explicit` mode (unset entries removed), so the
/// libraries start with a recording's settings. Returns only on failure.
pub fn restart_with(env: &[(String, Option<String>)]) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return e,
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg0(arg0).args(args).env(PIN_MODE_VAR, "explicit").env_remove(OVERRODE_VAR);
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.exec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mkl_cbwr_spellings_round_trip() {
        assert_eq!(mkl_cbwr_code("AVX2,STRICT"), Some(10 | 0x10000));
        assert_eq!(mkl_cbwr_code("COMPATIBLE,STRICT"), Some(3 | 0x10000));
        assert_eq!(mkl_cbwr_code("avx2"), Some(10));
        assert_eq!(mkl_cbwr_code("COMPATIBLE"), Some(3));
        assert_eq!(mkl_cbwr_code("STRICT"), None, "STRICT needs a branch");
        assert_eq!(mkl_cbwr_code("AVX2,AVX512"), None);
        assert_eq!(mkl_cbwr_code("AVX3"), None);
        for (k, v) in PORTABLE_PINS {
            if k == "MKL_CBWR" {
                assert_eq!(mkl_cbwr_name(mkl_cbwr_code(v).unwrap()), v);
            }
        }
    }

    #[test]
    fn recorded_pins_reject_unsafe_values_and_name_the_key() {
        let bad = serde_json::json!({"cpu_pins": {"settings": {"MKL_CBWR": "AVX2; rm -rf /"}}});
        let e = recorded_pins(&bad).unwrap_err();
        assert!(e.contains("MKL_CBWR"), "{e}");
        let old = serde_json::json!({"cpu_capability": "AVX512"});
        assert_eq!(recorded_pins(&old).unwrap(), RecordedPins::Unpinned { cpu_capability: "AVX512".into() });
        let no_settings = serde_json::json!({"cpu_pins": {"mode": "portable"}});
        assert!(recorded_pins(&no_settings).unwrap_err().contains("settings"));
    }

    #[test]
    fn a_recording_with_other_pins_asks_for_a_restart_with_them() {
        let mut settings = serde_json::Map::new();
        for (k, _) in PORTABLE_PINS {
            settings.insert(k.into(), serde_json::Value::Null);
        }
        settings.insert("ATEN_CPU_CAPABILITY".into(), "zz-not-a-level".into());
        let rec = serde_json::json!({"cpu_pins": {"settings": settings}});
        match recorded_pins(&rec).unwrap() {
            RecordedPins::Restart { env, differences } => {
                assert!(env.contains(&("ATEN_CPU_CAPABILITY".to_owned(), Some("zz-not-a-level".to_owned()))));
                assert!(
                    differences.iter().any(|d| d.starts_with("ATEN_CPU_CAPABILITY: recorded zz-not-a-level")),
                    "{differences:?}"
                );
            }
            other => panic!("expected a restart, got {other:?}"),
        }
    }
}
