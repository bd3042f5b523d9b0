//! Builds lowbit's CUDA kernels (route A of the toolchain notes) and their Rust declarations.
//!
//! 1. Finds nvcc: `$NVCC`, `$CUDA_HOME/bin/nvcc`, `$CUDA_PATH/bin/nvcc`, `$CUDA_ROOT/bin/nvcc`,
//!    `PATH`, `/usr/local/cuda/bin/nvcc`. No nvcc is a hard error naming `scripts/setup`: a build
//!    without kernels would only fail later, on the GPU machine.
//! 2. Compiles every `kernels/**/*.cu` with nvcc through the `cc` crate, one `cc::Build` per file
//!    (so each is a whole-program translation unit, see `compile_kernels`), and archives the
//!    objects into one static library, `liblowbit_kernels.a`. Objects are kept in a cache shared by
//!    every Cargo profile of the target directory (`ObjectCache`): kernels are built the same way
//!    whatever the profile, so `cargo clippy`, `cargo test` and maturin's release build compile each
//!    kernel once between them, and a change to one `.cu` file recompiles only that file.
//! 3. Links it with the CUDA runtime, statically (`cudart_static` + dl, rt, pthread, stdc++).
//! 4. Runs bindgen on `kernels/include/lowbit_kernels.h` into `$OUT_DIR/bindings.rs`.
//!
//! Environment:
//! - `LOWBIT_CUDA_ARCHS`: comma-separated targets replacing the default
//!   `sm_80,sm_89,sm_90a,compute_80`. `sm_XX` embeds SASS for that GPU, `compute_XX` embeds PTX
//!   that newer GPUs JIT-compile. For a quick dev build for H100/H200: `LOWBIT_CUDA_ARCHS=sm_90a`.
//! - `LOWBIT_NVCC_EXTRA_FLAGS`: extra whitespace-separated nvcc flags, e.g. `-Xptxas=-v` for the
//!   register/spill report of every kernel (printed as cargo warnings).
//! - `NVCC`, `CUDA_HOME` (set by `.cargo/config.toml` to the pip toolchain in `.tools/`),
//!   `CUDA_PATH`, `CUDA_ROOT`, `PATH`: where nvcc is looked for.
//! - `LIBCLANG_PATH`: where bindgen finds libclang (also set by `.cargo/config.toml`).
//! - `LOWBIT_KERNEL_CACHE`: the object cache's directory (default
//!   `<target dir>/lowbit-kernel-cache`); empty turns the cache off.

use std::env;
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// Default targets: SASS for A100 (sm_80), L4/L40/RTX 40 (sm_89) and H100/H200 (sm_90a, the
/// arch-specific variant that allows wgmma/TMA), plus compute_80 PTX as the portable fallback
/// that later GPUs JIT-compile. The PTX must come from nvcc 13.0 (driver 580 cannot JIT newer PTX).
const DEFAULT_ARCHS: &str = "sm_80,sm_89,sm_90a,compute_80";

/// nvcc flags for every kernel, with the reason for each:
const NVCC_FLAGS: &[&str] = &[
    "-O3",
    // The kernels use C++17 (if constexpr, inline variables, static_assert without message).
    "-std=c++17",
    // Line tables in the SASS: compute-sanitizer and Nsight map to source lines; no perf cost.
    "-lineinfo",
    // A register spill in a kernel is a performance bug: make ptxas say so on every build.
    "-Xptxas=--warn-on-spills",
    // Lets device code call constexpr host functions (tables, static_assert helpers).
    "--expt-relaxed-constexpr",
    // Compress the embedded fatbin (SASS and PTX): uncompressed, a weight-only test binary carried
    // 159 MB of fatbin and a CI clone's target dir grew to ~7.6 GB until a link ran out of disk;
    // compressed, all kernels' fatbins for the four default targets are 24.5 MB (measured 2026-11-28).
    // The driver decompresses a module when it loads it (CUDA 13 needs driver 580+, which
    // nvcc 13.0's output needs anyway). `LOWBIT_NVCC_EXTRA_FLAGS=--compress-mode=none` undoes it.
    "--compress-mode=size",
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let kernels_dir = manifest_dir.join("../../kernels");
    let kernels_dir = kernels_dir.canonicalize().unwrap_or(kernels_dir);
    let include_dir = kernels_dir.join("include");
    let header = include_dir.join("lowbit_kernels.h");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));

    // A directory makes cargo rerun when any file below it changes.
    println!("cargo:rerun-if-changed={}", kernels_dir.display());
    for var in [
        "NVCC",
        "CUDA_HOME",
        "CUDA_PATH",
        "CUDA_ROOT",
        "PATH",
        "LOWBIT_CUDA_ARCHS",
        "LOWBIT_NVCC_EXTRA_FLAGS",
        "LIBCLANG_PATH",
        "LOWBIT_KERNEL_CACHE",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let nvcc = find_nvcc().unwrap_or_else(|looked| {
        panic!(
            "\n\nlowbit-kernels-sys: nvcc (CUDA 13.0) not found; looked at {looked}.\n\
             Run `scripts/setup` from the repository root: it installs the pinned CUDA 13.0 \
             toolchain (nvcc, cudart, headers) and libclang into .tools/, which \
             .cargo/config.toml points CUDA_HOME and LIBCLANG_PATH at.\n\
             Or set NVCC / CUDA_HOME to an existing CUDA 13.0 installation.\n"
        )
    });
    let nvcc_version = nvcc_version(&nvcc);
    let archs = env::var("LOWBIT_CUDA_ARCHS").unwrap_or_else(|_| DEFAULT_ARCHS.to_string());
    let gencode = gencode_flags(&archs);
    if gencode.iter().any(|f| f.contains(",code=compute_")) && !nvcc_version.contains("release 13.0,") {
        println!(
            "cargo:warning=lowbit-kernels-sys: embedding PTX from `{nvcc_version}`; the GPU \
             machines' driver 580 only JIT-compiles PTX from nvcc 13.0 (see toolchain notes)"
        );
    }

    // cc finds nvcc only through $NVCC in this process's environment (Build::env only affects
    // the child processes), so set it before any cc::Build exists. Nothing else runs yet.
    // SAFETY: the build script is still single-threaded here; no other thread reads the env.
    unsafe { env::set_var("NVCC", &nvcc) };

    let cu_files = find_cu_files(&kernels_dir);
    assert!(!cu_files.is_empty(), "no .cu files under {}", kernels_dir.display());
    let extra: Vec<String> = env::var("LOWBIT_NVCC_EXTRA_FLAGS")
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let cache = ObjectCache::new(&out_dir, &kernels_dir, &nvcc, &nvcc_version, &gencode, &extra);
    let objects = compile_kernels(&cu_files, &include_dir, &gencode, &extra, cache.as_ref());
    if let Some(cache) = &cache {
        cache.prune();
    }

    let mut archive = cc::Build::new();
    archive.cpp(true).cpp_link_stdlib("stdc++");
    let library = archive.create_archive("lowbit_kernels", &objects);
    // link-search + link-lib=static=lowbit_kernels + link-lib=stdc++, in that order.
    cc::emit_link_directives(&archive, &library);

    // The CUDA runtime, statically: nothing CUDA is NEEDED at load time except the driver
    // (libcuda), which cudart itself dlopen()s. The pip layout keeps it in <cuda>/lib, which
    // cc's `.cudart("static")` would not search (it looks in <cuda>/targets/<arch>-linux/lib).
    let cudart_dir = find_cudart_static(&nvcc).unwrap_or_else(|looked| {
        panic!(
            "lowbit-kernels-sys: libcudart_static.a not found next to {} (looked in {looked}); \
             run `scripts/setup` (it installs the cudart wheel with the toolchain)",
            nvcc.display()
        )
    });
    println!("cargo:rustc-link-search=native={}", cudart_dir.display());
    println!("cargo:rustc-link-lib=static=cudart_static");
    for lib in ["dl", "rt", "pthread"] {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }

    generate_bindings(&header, &out_dir.join("bindings.rs"));

    println!("cargo:rustc-env=LOWBIT_NVCC_VERSION={nvcc_version}");
    println!("cargo:rustc-env=LOWBIT_CUDA_ARCHS={archs}");
}

/// Looks for nvcc in the documented order; on failure returns the places it looked.
fn find_nvcc() -> Result<PathBuf, String> {
    let mut looked = Vec::new();
    if let Some(nvcc) = env::var_os("NVCC") {
        let nvcc = PathBuf::from(nvcc);
        if nvcc.is_file() {
            return Ok(nvcc);
        }
        // A bare name ("nvcc") is resolved through PATH below.
        looked.push(format!("$NVCC={}", nvcc.display()));
    }
    for var in ["CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"] {
        if let Some(root) = env::var_os(var) {
            let candidate = PathBuf::from(root).join("bin/nvcc");
            if candidate.is_file() {
                return Ok(candidate);
            }
            looked.push(format!("${var}/bin/nvcc={}", candidate.display()));
        }
    }
    if let Some(path) = env::var_os("PATH") {
        for dir in env::split_paths(&path) {
            let candidate = dir.join("nvcc");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
        looked.push("PATH".to_string());
    }
    let system = PathBuf::from("/usr/local/cuda/bin/nvcc");
    if system.is_file() {
        return Ok(system);
    }
    looked.push(system.display().to_string());
    Err(looked.join(", "))
}

/// `nvcc --version`'s release line, e.g. "Cuda compilation tools, release 13.0, V13.0.88".
fn nvcc_version(nvcc: &Path) -> String {
    let out = Command::new(nvcc)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("lowbit-kernels-sys: cannot run {}: {e}", nvcc.display()));
    assert!(
        out.status.success(),
        "lowbit-kernels-sys: `{} --version` failed: {}",
        nvcc.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.contains("release"))
        .unwrap_or_else(|| text.lines().last().unwrap_or("unknown"))
        .trim()
        .to_string()
}

/// `sm_90a` -> `-gencode=arch=compute_90a,code=sm_90a`; `compute_80` -> PTX for compute_80.
fn gencode_flags(archs: &str) -> Vec<String> {
    let flags: Vec<String> = archs
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            if let Some(v) = a.strip_prefix("sm_") {
                format!("-gencode=arch=compute_{v},code=sm_{v}")
            } else if let Some(v) = a.strip_prefix("compute_") {
                format!("-gencode=arch=compute_{v},code=compute_{v}")
            } else {
                panic!(
                    "lowbit-kernels-sys: LOWBIT_CUDA_ARCHS entry `{a}` is neither sm_XX nor \
                     compute_XX (example: LOWBIT_CUDA_ARCHS=sm_90a)"
                )
            }
        })
        .collect();
    assert!(!flags.is_empty(), "lowbit-kernels-sys: LOWBIT_CUDA_ARCHS is empty");
    flags
}

/// Every `*.cu` below `dir`, sorted so the archive is deterministic.
fn find_cu_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).unwrap_or_else(|e| panic!("lowbit-kernels-sys: cannot read {}: {e}", d.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "cu") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Compiles each `.cu` on its own thread with its own `cc::Build` and returns the objects (from
/// the cache where it holds them).
///
/// Why one Build per file: given several `.cu` files, cc compiles them with `--device-c`
/// (relocatable device code) and adds a device-link step. lowbit's kernels need no cross-file
/// device calls, and whole-program compilation keeps the most-tested registration path and lets
/// the embedded compute_80 PTX be JIT-compiled on its own on GPUs without matching SASS.
fn compile_kernels(
    files: &[PathBuf],
    include_dir: &Path,
    gencode: &[String],
    extra: &[String],
    cache: Option<&ObjectCache>,
) -> Vec<PathBuf> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .iter()
            .map(|file| {
                scope.spawn(move || {
                    // The key of the bytes nvcc is about to read: an object is stored under it only if
                    // no source changed while nvcc ran (`ObjectCache::store`).
                    let entry = cache.and_then(|c| c.entry(file));
                    if let Some(hit) = cache.zip(entry.as_deref()).and_then(|(c, e)| c.lookup(e)) {
                        return vec![hit];
                    }
                    let mut build = cc::Build::new();
                    build
                        .cuda(true)
                        // cudart is linked once, by main(), from the pip layout's lib/.
                        .cudart("none")
                        // cc turns a debug profile into nvcc `-G` (device debug: unoptimised
                        // kernels, and it overrides -lineinfo). Kernels are always built
                        // optimised with line info, whatever the Cargo profile.
                        .debug(false)
                        .opt_level(3)
                        .include(include_dir)
                        .file(file);
                    for flag in NVCC_FLAGS.iter().copied() {
                        build.flag(flag);
                    }
                    for flag in gencode.iter().chain(extra) {
                        build.flag(flag);
                    }
                    let objects = build.compile_intermediates();
                    match (cache, entry, objects.as_slice()) {
                        (Some(c), Some(entry), [object]) => vec![c.store(file, &entry, object)],
                        _ => objects,
                    }
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("nvcc compile thread panicked")).collect()
    })
}

/// nvcc objects kept across Cargo profiles, keyed by everything that decides their bytes.
///
/// Cargo runs this build script once per profile (`dev` for clippy, `test`, `release` for the
/// wheel), each time in a fresh `OUT_DIR`, but the kernels are compiled identically in every
/// profile (see `compile_kernels`), so one compile can serve them all. The key of a `.cu` file
/// hashes its own bytes, every other kernel source that is not a `.cu` file (the headers it may
/// include: `kernels/` holds no `.cu` that includes another), the nvcc path and version, every
/// flag, the target triple and the environment variables cc or nvcc read flags from. A miss
/// compiles as before and copies the object in (write, then rename: concurrent builds never see
/// a partial file); entries unused for a week are removed. ptxas's spill warnings print on the
/// compile that fills an entry, not on later hits. Any doubt (an unknown target-dir
/// layout, an unreadable file, a source edited while nvcc ran) means no cache entry, never a
/// stale object.
struct ObjectCache {
    dir: PathBuf,
    kernels_dir: PathBuf,
    /// Hash state over everything but the `.cu` file itself.
    common: DefaultHasher,
    /// Hash of the headers alone, as read at the start of the build.
    headers: u64,
}

impl ObjectCache {
    /// Environment variables that cc or nvcc read flags from.
    const FLAG_VARS: [&'static str; 8] =
        ["CFLAGS", "CXXFLAGS", "CUDAFLAGS", "NVCC_FLAGS", "NVCC_PREPEND_FLAGS", "NVCC_APPEND_FLAGS", "CC", "CXX"];
    /// How long an entry no build has used is kept.
    const MAX_IDLE: Duration = Duration::from_secs(7 * 24 * 3600);

    fn new(
        out_dir: &Path,
        kernels_dir: &Path,
        nvcc: &Path,
        nvcc_version: &str,
        gencode: &[String],
        extra: &[String],
    ) -> Option<Self> {
        let dir = match env::var_os("LOWBIT_KERNEL_CACHE") {
            Some(d) if d.is_empty() => return None,
            Some(d) => PathBuf::from(d),
            // OUT_DIR is <target dir>[/<triple>]/<profile>/build/<package>-<hash>/out.
            None => {
                let build = out_dir.ancestors().nth(2)?;
                if build.file_name()? != "build" {
                    return None;
                }
                // Builds with an explicit --target (maturin may pass one) share it too: the
                // triple is part of the key.
                let mut target_dir = build.ancestors().nth(2)?;
                if env::var_os("TARGET").is_some_and(|t| target_dir.file_name() == Some(t.as_os_str())) {
                    target_dir = target_dir.parent()?;
                }
                target_dir.join("lowbit-kernel-cache")
            }
        };
        fs::create_dir_all(&dir).ok()?;
        for var in Self::FLAG_VARS {
            println!("cargo:rerun-if-env-changed={var}");
        }
        let mut common = DefaultHasher::new();
        "lowbit-kernel-cache v1".hash(&mut common);
        nvcc.hash(&mut common);
        nvcc_version.hash(&mut common);
        NVCC_FLAGS.hash(&mut common);
        gencode.hash(&mut common);
        extra.hash(&mut common);
        for var in ["TARGET", "HOST"].iter().chain(Self::FLAG_VARS.iter()) {
            (var, env::var_os(var)).hash(&mut common);
        }
        let headers = Self::headers_hash(kernels_dir)?;
        headers.hash(&mut common);
        Some(Self { dir, kernels_dir: kernels_dir.to_path_buf(), common, headers })
    }

    /// Hash of every kernel source that is not a `.cu` file (path and bytes, in path order).
    fn headers_hash(kernels_dir: &Path) -> Option<u64> {
        let mut h = DefaultHasher::new();
        let mut sources = Vec::new();
        let mut stack = vec![kernels_dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).ok()? {
                let path = entry.ok()?.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_none_or(|e| e != "cu" && e != "md") {
                    sources.push(path);
                }
            }
        }
        sources.sort();
        for path in sources {
            path.strip_prefix(kernels_dir).ok()?.hash(&mut h);
            fs::read(&path).ok()?.hash(&mut h);
        }
        Some(h.finish())
    }

    /// The cache file of `file`: `<stem>-<128-bit key>.o`, or `None` when the file is unreadable.
    fn entry(&self, file: &Path) -> Option<PathBuf> {
        let bytes = fs::read(file).ok()?;
        let key: Vec<u64> = (0u8..2)
            .map(|salt| {
                let mut h = self.common.clone();
                salt.hash(&mut h);
                // The full path: -lineinfo records it in the object.
                file.hash(&mut h);
                bytes.hash(&mut h);
                h.finish()
            })
            .collect();
        let stem = file.file_stem()?.to_string_lossy();
        Some(self.dir.join(format!("{stem}-{:016x}{:016x}.o", key[0], key[1])))
    }

    /// The cached object at `entry` (from `entry`), marked as used, if there is one.
    fn lookup(&self, entry: &Path) -> Option<PathBuf> {
        let f = fs::File::options().append(true).open(entry).ok()?;
        // A failed mtime update only shortens the entry's life.
        let _ = f.set_modified(SystemTime::now());
        Some(entry.to_path_buf())
    }

    /// Copies a fresh object of `file` into the cache at `entry` (its key taken before nvcc ran)
    /// and returns the path to archive: the cached copy, or the object itself if the copy fails or
    /// if `file` or a header changed while nvcc ran (the object's sources are then unknown, so it
    /// is used for this build only and never stored under either key).
    fn store(&self, file: &Path, entry: &Path, object: &Path) -> PathBuf {
        if self.entry(file).as_deref() != Some(entry) || Self::headers_hash(&self.kernels_dir) != Some(self.headers) {
            println!(
                "cargo:warning={} or a kernel header changed during its compile: object not cached",
                file.display()
            );
            return object.to_path_buf();
        }
        let tmp = entry.with_extension(format!("o.tmp{}", std::process::id()));
        if fs::copy(object, &tmp).is_ok() && fs::rename(&tmp, entry).is_ok() {
            entry.to_path_buf()
        } else {
            let _ = fs::remove_file(&tmp);
            object.to_path_buf()
        }
    }

    /// Removes entries (and leftover temporary files) that no build has used for `MAX_IDLE`.
    fn prune(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else { return };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let idle = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| now.duration_since(t).ok());
            if idle.is_some_and(|idle| idle > Self::MAX_IDLE) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// The directory holding `libcudart_static.a`: `<nvcc>/../lib` (pip layout), `../lib64` or
/// `../targets/x86_64-linux/lib` (toolkit installers).
fn find_cudart_static(nvcc: &Path) -> Result<PathBuf, String> {
    let root = nvcc.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
    let candidates = [root.join("lib"), root.join("lib64"), root.join("targets/x86_64-linux/lib")];
    candidates
        .iter()
        .find(|d| d.join("libcudart_static.a").is_file())
        .cloned()
        .ok_or_else(|| candidates.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "))
}

/// bindgen over the one C header: launchers, lowbit_status, and the LOWBIT_* constants.
fn generate_bindings(header: &Path, out: &Path) {
    let bindings = bindgen::Builder::default()
        .header(header.to_string_lossy())
        // Plain C: the header must stay parseable without CUDA or compiler-private headers.
        .clang_arg("-xc")
        .clang_arg("-std=c11")
        .rust_edition(bindgen::RustEdition::Edition2024)
        .allowlist_function("lowbit_.*")
        .allowlist_type("lowbit_.*")
        .allowlist_var("LOWBIT_.*")
        // `LOWBIT_OK` rather than `lowbit_status_code_LOWBIT_OK`: the C names are already prefixed.
        .prepend_enum_name(false)
        .default_enum_style(bindgen::EnumVariation::Consts)
        .derive_debug(true)
        .derive_default(true)
        .derive_partialeq(true)
        .derive_eq(true)
        .generate_comments(true)
        .layout_tests(true)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .unwrap_or_else(|e| {
            panic!(
                "lowbit-kernels-sys: bindgen failed on {}: {e}. bindgen needs libclang: run \
                 `scripts/setup` or set LIBCLANG_PATH",
                header.display()
            )
        });
    bindings.write_to_file(out).unwrap_or_else(|e| panic!("lowbit-kernels-sys: cannot write {}: {e}", out.display()));
}
