//! Shared helpers for qvisor's integration tests.
//!
//! `cargo test` does not build other members' `cdylib`s, so tests that need the
//! plugin libraries call [`plugin_dir`], which runs `$CARGO build --workspace`
//! (same profile) once per test process. Fixture plugins are built by
//! [`fixtures`] outside the workspace, into `target/qvisor-fixtures/`, so the
//! default plugin set never sees them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub mod daemon;
pub mod guest;

/// The repository root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `target/<profile>` of the running test binary (its parent when it lives in `deps/`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let mut dir = exe.parent().expect("test binary directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// `debug` or `release`: the profile the tests were built with.
pub fn profile() -> String {
    profile_dir()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "debug".into())
}

/// The cargo target directory.
pub fn target_dir() -> PathBuf {
    profile_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn run_cargo_build(args: &[&str], target: &Path, what: &str) {
    let mut cmd = Command::new(cargo());
    cmd.arg("build").args(args).env("CARGO_TARGET_DIR", target);
    if profile() == "release" {
        cmd.arg("--release");
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running cargo for {what}: {e}"));
    assert!(
        out.status.success(),
        "cargo build of {what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds the whole workspace once (plugins included) and returns the directory
/// holding the binaries and plugin libraries (`target/<profile>`).
pub fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = workspace_root();
        let manifest = root.join("Cargo.toml");
        run_cargo_build(
            &[
                "--workspace",
                "--manifest-path",
                &manifest.to_string_lossy(),
            ],
            &target_dir(),
            "the workspace",
        );
        profile_dir()
    })
}

/// A binary of the workspace (`qvisor`, `qvisord`, `qvisor-conformance`), built.
pub fn bin(name: &str) -> PathBuf {
    plugin_dir().join(name)
}

/// The fixture plugin libraries.
#[derive(Debug)]
pub struct Fixtures {
    /// Panics in `prepare`; built against the real SDK.
    pub panic: PathBuf,
    /// Built against an SDK whose version is 0.2.0.
    pub sdk_v02: PathBuf,
    /// Built against an SDK whose `Description` has an extra field.
    pub sdk_layout: PathBuf,
    /// Built against an SDK whose `Request` has an extra variant.
    pub sdk_extended: PathBuf,
}

/// Replaces `from` with `to` in `text`, insisting that it was there.
fn patch(text: &str, from: &str, to: &str, file: &str) -> String {
    assert!(
        text.contains(from),
        "fixture patch no longer applies to {file}: {from:?} not found"
    );
    text.replacen(from, to, 1)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create fixture dir");
    for entry in std::fs::read_dir(from).expect("read fixture source") {
        let entry = entry.expect("dir entry");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).expect("copy fixture file");
        }
    }
}

/// Writes a stand-alone copy of `sdk/` (own package metadata, no workspace
/// inheritance) with `mutate` applied to (file name, contents).
fn sdk_copy(dest: &Path, version: &str, mutate: &dyn Fn(&str, String) -> String) {
    let src = workspace_root().join("sdk/src");
    std::fs::create_dir_all(dest.join("src")).expect("create sdk copy");
    for entry in std::fs::read_dir(&src).expect("read sdk/src") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(entry.path()).expect("read sdk source");
        std::fs::write(dest.join("src").join(&name), mutate(&name, text)).expect("write sdk copy");
    }
    std::fs::write(
        dest.join("Cargo.toml"),
        format!(
            "[package]\nname = \"qvisor-sdk\"\nversion = \"{version}\"\nedition = \"2021\"\n\
             license = \"MIT OR Apache-2.0\"\n\n[dependencies]\nabi_stable = \"0.11.3\"\n"
        ),
    )
    .expect("write sdk copy manifest");
}

/// Builds one fixture crate against one SDK variant; returns the library path.
fn build_fixture(
    root: &Path,
    fixture: &str,
    variant: &str,
    version: &str,
    mutate: &dyn Fn(&str, String) -> String,
) -> PathBuf {
    let dir = root.join(variant);
    let _ = std::fs::remove_dir_all(&dir);
    sdk_copy(&dir.join("sdk"), version, mutate);
    let plugin = dir.join("plugin");
    copy_dir(
        &workspace_root().join("tests/fixtures").join(fixture),
        &plugin,
    );
    let lib_name = format!("fixture_{variant}");
    let manifest = plugin.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).expect("read fixture manifest");
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("name = ") {
                format!("name = \"{}\"", lib_name.replace('_', "-"))
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&manifest, text).expect("write fixture manifest");
    run_cargo_build(
        &["--manifest-path", &manifest.to_string_lossy()],
        &root.join("target"),
        &format!("fixture {variant}"),
    );
    root.join("target")
        .join(profile())
        .join(format!("lib{lib_name}.so"))
}

/// Builds the fixture plugins once per test process.
pub fn fixtures() -> &'static Fixtures {
    static FIX: OnceLock<Fixtures> = OnceLock::new();
    FIX.get_or_init(|| {
        let root = target_dir().join("qvisor-fixtures");
        let same = |_: &str, t: String| t;
        let sdk_version = env_sdk_version();
        let layout = |name: &str, t: String| match name {
            "messages.rs" => {
                let t = patch(
                    &t,
                    "pub struct Description {\n",
                    "pub struct Description {\n    /// Added by the layout fixture.\n    pub extra: u64,\n",
                    name,
                );
                patch(&t, "        Description {\n", "        Description {\n            extra: 0,\n", name)
            }
            _ => t,
        };
        let extended = |name: &str, t: String| match name {
            "messages.rs" => patch(
                &t,
                "    Storage(RBox<StorageRequest>),\n}",
                "    Storage(RBox<StorageRequest>),\n    /// Added by the extended fixture.\n    Extra(u32),\n}",
                name,
            ),
            "export.rs" => patch(
                &t,
                "        Request::Release(d) => {",
                "        Request::Extra(_) => return Err(PluginError::unsupported(\"extra\")),\n        Request::Release(d) => {",
                name,
            ),
            _ => t,
        };
        Fixtures {
            panic: build_fixture(&root, "panic-plugin", "panic", &sdk_version, &same),
            sdk_v02: build_fixture(&root, "incompatible-plugin", "sdk_v02", &bump_minor(&sdk_version), &same),
            sdk_layout: build_fixture(&root, "incompatible-plugin", "sdk_layout", &sdk_version, &layout),
            sdk_extended: build_fixture(&root, "incompatible-plugin", "sdk_extended", &sdk_version, &extended),
        }
    })
}

/// Builds the documented out-of-tree example (`docs/examples/hello-plugin`)
/// exactly as its README says (`cargo build` in its directory) and returns
/// the library.
pub fn example_plugin() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let target = target_dir().join("qvisor-fixtures/target");
        let manifest = workspace_root().join("docs/examples/hello-plugin/Cargo.toml");
        run_cargo_build(
            &["--manifest-path", &manifest.to_string_lossy()],
            &target,
            "docs/examples/hello-plugin",
        );
        target.join(profile()).join("libhello_plugin.so")
    })
}

/// The SDK version in `sdk/Cargo.toml`.
fn env_sdk_version() -> String {
    let text = std::fs::read_to_string(workspace_root().join("sdk/Cargo.toml"))
        .expect("read sdk manifest");
    text.lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("sdk version")
        .to_string()
}

/// `0.y.z` → `0.(y+1).0`: the next incompatible version under abi_stable's rules.
fn bump_minor(v: &str) -> String {
    let mut parts = v.split('.');
    let major = parts.next().unwrap_or("0");
    let minor: u32 = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    format!("{major}.{}.0", minor + 1)
}

/// Path of the C library the test process has mapped: a real shared object
/// that is not a qvisor plugin.
pub fn some_non_plugin_library() -> PathBuf {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("/libc.so") || p.contains("/libc-"))
        .map(PathBuf::from)
        .expect("libc mapped into the test process")
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/qvisor-test-<tag>-<pid>-<n>`.
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "qvisor-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
