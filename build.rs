// Rebuild when a migration changes: `sqlx::migrate!` embeds the migrations at compile time.
// And name the commit being built (`keyward --version`, `GET /version`): `unknown` outside a git
// checkout (a source archive, a container build without `.git`).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    // Not named KEYWARD_*: `cargo run` also sets it for the program, which would warn of it as
    // an unknown setting.
    println!("cargo:rustc-env=BUILT_FROM_COMMIT={commit}");
}
