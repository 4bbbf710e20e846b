//! Links the system's libapparmor (Debian: `libapparmor-dev`).

fn main() {
    println!("cargo:rustc-link-lib=dylib=apparmor");
    println!("cargo:rerun-if-changed=build.rs");
}
