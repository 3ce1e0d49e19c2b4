//! A real headless Chromium, for the scenarios about web pages.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};

/// How long Chromium may take to load a page.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

/// A headless Chromium: Debian's `chromium`, or what CI runners ship.
pub struct Chromium {
    binary: PathBuf,
}

/// The names Chromium goes by, as `scripts/chromium.sh` looks for them.
const BROWSERS: [&str; 4] = [
    "chromium",
    "google-chrome",
    "google-chrome-stable",
    "chromium-browser",
];

impl Chromium {
    /// `HERALD_TEST_CHROMIUM`, else the first of [`BROWSERS`] on PATH (`scripts/test.sh`
    /// installs `chromium`); without one this test cannot run, and fails saying so.
    pub fn find() -> anyhow::Result<Self> {
        if let Some(binary) = std::env::var_os("HERALD_TEST_CHROMIUM") {
            return Ok(Chromium {
                binary: binary.into(),
            });
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
        match BROWSERS
            .iter()
            .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
            .find(|binary| binary.is_file())
        {
            Some(binary) => Ok(Chromium { binary }),
            None => bail!(
                "chromium is not installed: this test loads a web page in a real browser; \
                 run scripts/chromium.sh (scripts/test.sh does) or set HERALD_TEST_CHROMIUM"
            ),
        }
    }

    /// Loads `url` and returns the DOM after load, serialized.
    pub async fn dump_dom(&self, url: &str) -> anyhow::Result<String> {
        let output = self.run(&["--dump-dom", url]).await?;
        Ok(String::from_utf8(output)?)
    }

    /// Loads `url` and saves a picture of the page, 1280 pixels wide.
    pub async fn screenshot(&self, url: &str, file: &Path) -> anyhow::Result<()> {
        let to = format!("--screenshot={}", file.display());
        self.run(&[&to, "--window-size=1280,1400", "--hide-scrollbars", url])
            .await?;
        ensure!(file.exists(), "chromium wrote no {}", file.display());
        Ok(())
    }

    async fn run(&self, args: &[&str]) -> anyhow::Result<Vec<u8>> {
        // A profile of its own: Chromium refuses to share one between processes.
        let profile = std::env::temp_dir().join(format!(
            "herald-chromium-{}-{}",
            std::process::id(),
            sequence()
        ));
        let run = tokio::process::Command::new(&self.binary)
            .args(["--headless", "--no-sandbox", "--disable-gpu"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(BROWSER_TIMEOUT, run)
            .await
            .context("chromium did not finish loading the page")??;
        let _ = std::fs::remove_dir_all(&profile);
        ensure!(
            output.status.success(),
            "chromium {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(output.stdout)
    }
}

/// A number unique within this process.
fn sequence() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
