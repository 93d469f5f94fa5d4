//! Stamps the build with the commit it was made from, for
//! `tripgate_build_info{version,git_sha}`: `TRIPGATE_GIT_SHA` when the
//! builder sets it (an image build has no `.git`), else `git rev-parse`,
//! else "unknown".

fn main() {
    println!("cargo:rerun-if-env-changed=TRIPGATE_GIT_SHA");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let sha = std::env::var("TRIPGATE_GIT_SHA")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| {
            std::process::Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        })
        .filter(|s| s.bytes().all(|b| b.is_ascii_alphanumeric()))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TRIPGATE_GIT_SHA={sha}");
}
