//! PDF for people who file reports: the HTML report printed by headless
//! Chromium (`--print-to-pdf`) when it is installed. Without it there is no
//! PDF (no other renderer is bundled): the error says so and how to get one,
//! and the HTML can be printed from any browser. The page footer of the HTML
//! (`@media print`) names the anchor checkpoint on every printed page.

use crate::ReportError;
use std::path::{Path, PathBuf};

/// Where Chromium is looked for when none is configured.
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// Largest PDF read back from Chromium.
const MAX_PDF_BYTES: u64 = 256 << 20;

/// The Chromium binary to print with, if one is installed: `configured`
/// when given (and present), else [`DEFAULT_CHROMIUM`].
pub fn find_chromium(configured: Option<&Path>) -> Option<PathBuf> {
    let p = configured.unwrap_or(Path::new(DEFAULT_CHROMIUM));
    p.is_file().then(|| p.to_path_buf())
}

/// Prints `page` (HTML) to PDF bytes with headless Chromium at `chromium`.
pub fn print(chromium: &Path, page: &str) -> Result<Vec<u8>, ReportError> {
    if !chromium.is_file() {
        return Err(ReportError::Pdf(format!(
            "PDF is printed from the HTML report with headless Chromium, and {} does not exist: install it (Debian: apt-get install chromium) or take the HTML and print it from a browser",
            chromium.display()
        )));
    }
    let io = |context: &str, source| ReportError::Io {
        context: context.to_string(),
        source,
    };
    let dir =
        std::env::temp_dir().join(format!("kaudit-report-{}-{}", std::process::id(), unique()));
    std::fs::create_dir_all(&dir).map_err(|e| io("creating a directory to print in", e))?;
    let html = dir.join("report.html");
    let pdf = dir.join("report.pdf");
    let out = (|| {
        std::fs::write(&html, page).map_err(|e| io("writing the HTML to print", e))?;
        // A fresh profile per run: concurrent prints do not share one.
        let status = std::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-pdf-header-footer",
            ])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .arg(format!("--print-to-pdf={}", pdf.display()))
            .arg(format!("file://{}", html.display()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map_err(|e| io(&format!("running {}", chromium.display()), e))?;
        let len = std::fs::metadata(&pdf).map(|m| m.len()).unwrap_or(0);
        if len > MAX_PDF_BYTES {
            return Err(ReportError::Pdf(format!(
                "the PDF is larger than {MAX_PDF_BYTES} bytes"
            )));
        }
        match std::fs::read(&pdf) {
            Ok(b) if status.success() && b.starts_with(b"%PDF") => Ok(b),
            _ => Err(ReportError::Pdf(format!(
                "{} did not print a PDF (exit {status})",
                chromium.display()
            ))),
        }
    })();
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
