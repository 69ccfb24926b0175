//! Build script of the `propensity` binary: records the git revision the
//! binary was built from, for `propensity --version`, as the environment
//! variable `PROPENSITY_GIT_REVISION` of the compilation.
//!
//! A build outside a git checkout (a source tarball, a vendored copy, git
//! not installed, or a checkout git refuses as "dubious ownership") gets
//! `unknown` instead of failing: the revision is information, never a
//! build requirement.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_owned())
}

/// Re-run when the checked-out commit changes: HEAD itself (detached, or
/// switched to another branch), the branch it points to, and packed refs.
/// Only existing files are named, since cargo re-runs the script on every
/// build for a path that does not exist.
fn watch_git_head() {
    let mut paths = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        paths.push(git(&["rev-parse", "--git-path", &branch]));
    }
    paths.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in paths.into_iter().flatten() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    watch_git_head();
    let revision = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=PROPENSITY_GIT_REVISION={revision}");
}
