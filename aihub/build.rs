//! Takes Swagger UI, the renderer of `/docs`, from the npm registry at build time, so the binary
//! serves it itself and no request of the portal leaves the machine.
//!
//! `swagger-ui-dist` at one pinned version (and checked against its pinned sha512) is fetched
//! once with `npm pack` into `$AIHUB_CACHE` (default `~/.cache/aihub`), unpacked there, and the
//! files the portal serves are copied into `OUT_DIR` for `include_bytes!` (src/docs.rs). A machine
//! without npm builds once the unpacked package is in that cache folder.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use sha2::{Digest, Sha512};

const VERSION: &str = "5.35.0";
/// The registry's `dist.integrity` of `swagger-ui-dist@5.35.0`.
const INTEGRITY: &str =
    "sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ==";
/// What the portal serves; src/docs.rs names the same files.
const FILES: &[&str] = &[
    "swagger-ui-bundle.js",
    "swagger-ui.css",
    "favicon-32x32.png",
    "favicon-16x16.png",
    "LICENSE",
    "NOTICE",
    "swagger-ui-bundle.js.LICENSE.txt",
];

type Result<T> = std::result::Result<T, String>;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=AIHUB_CACHE");
    println!("cargo:rustc-env=SWAGGER_UI_VERSION={VERSION}");
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?);
    let cache = cache_dir()?.join(format!("swagger-ui-dist-{VERSION}"));
    if !complete(&cache) {
        fetch(&out, &cache)?;
    }
    let target = out.join("swagger-ui");
    fs::create_dir_all(&target).map_err(|e| format!("creating {}: {e}", target.display()))?;
    for file in FILES {
        let from = cache.join(file);
        fs::copy(&from, target.join(file))
            .map_err(|e| format!("copying {}: {e}", from.display()))?;
    }
    Ok(())
}

fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("AIHUB_CACHE").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").ok_or("neither AIHUB_CACHE nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache").join("aihub"))
}

fn complete(dir: &Path) -> bool {
    FILES.iter().all(|file| dir.join(file).is_file())
}

/// `npm pack` the pinned package, check its digest, unpack the served files into `cache`.
fn fetch(out: &Path, cache: &Path) -> Result<()> {
    let work = out.join("npm-pack");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(|e| format!("creating {}: {e}", work.display()))?;
    let spec = format!("swagger-ui-dist@{VERSION}");
    let packed = Command::new("npm")
        .args(["pack", &spec, "--silent", "--pack-destination"])
        .arg(&work)
        .current_dir(&work)
        .status();
    match packed {
        Ok(status) if status.success() => {}
        Ok(status) => return Err(format!("`npm pack {spec}` failed ({status})")),
        Err(e) => {
            return Err(format!(
                "building aihub needs Swagger UI ({spec}) from the npm registry, and `npm` could \
                 not be run ({e}). Install Node.js and npm (apt-get install npm), or unpack the \
                 package's `package/` folder into {}",
                cache.display()
            ))
        }
    }
    let tarball = work.join(format!("swagger-ui-dist-{VERSION}.tgz"));
    let bytes = fs::read(&tarball).map_err(|e| format!("reading {}: {e}", tarball.display()))?;
    let integrity = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&bytes))
    );
    if integrity != INTEGRITY {
        return Err(format!(
            "{spec} from the registry has integrity {integrity}, not the pinned {INTEGRITY}"
        ));
    }
    let unpacked = work.join("unpacked");
    fs::create_dir_all(&unpacked).map_err(|e| format!("creating {}: {e}", unpacked.display()))?;
    let mut tar = Command::new("tar");
    tar.arg("-xzf").arg(&tarball).arg("-C").arg(&unpacked);
    for file in FILES {
        tar.arg(format!("package/{file}"));
    }
    let status = tar.status().map_err(|e| format!("running tar: {e}"))?;
    if !status.success() {
        return Err(format!("unpacking {} failed ({status})", tarball.display()));
    }
    // Into place in one rename, so a concurrent or interrupted build never sees half a folder.
    let parent = cache.parent().ok_or("the cache folder has no parent")?;
    let staged = parent.join(format!(
        "swagger-ui-dist-{VERSION}.partial-{}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&staged);
    fs::create_dir_all(&staged).map_err(|e| format!("creating {}: {e}", staged.display()))?;
    for file in FILES {
        let from = unpacked.join("package").join(file);
        fs::copy(&from, staged.join(file))
            .map_err(|e| format!("copying {}: {e}", from.display()))?;
    }
    let _ = fs::remove_dir_all(cache);
    if let Err(e) = fs::rename(&staged, cache) {
        let _ = fs::remove_dir_all(&staged);
        if !complete(cache) {
            return Err(format!("moving Swagger UI into {}: {e}", cache.display()));
        }
    }
    let _ = fs::remove_dir_all(&work);
    Ok(())
}
