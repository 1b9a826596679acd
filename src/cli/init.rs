//! `cartero init [DIR]`: a new project that works at once: cartero.toml with
//! a fresh random secret, a campaign and its segment, templates, sample
//! contacts, and a .gitignore for the database and the outbox. The campaign,
//! segments, templates and contacts are the example project's in this
//! repository, so the README's tour works in a new project as it does here.
//! Nothing is ever overwritten.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use rand::RngCore;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  cartero init newsletter && cd newsletter\n  cartero contacts import contacts.csv --list newsletter --consent-source \"signup form\"\n  cartero campaign send campaigns/welcome.toml"
)]
pub struct Args {
    /// Folder of the new project (created if missing) [default: the current folder].
    pub dir: Option<PathBuf>,
}

const GITIGNORE: &str = "\
# The database and what cartero writes stay out of git; campaigns,
# segments and templates are what the repository is for.
/cartero.db
/cartero.db-shm
/cartero.db-wal
/outbox/
*.rejects.csv
";

fn config(secret: &str) -> String {
    format!(
        "# cartero.toml: every key and its default is in docs/CONFIG.md; any key can be\n\
         # overridden by CARTERO_<SECTION>_<KEY>, e.g. CARTERO_SMTP_PASSWORD.\n\
         \n\
         [database]\n\
         url = \"sqlite://cartero.db\"\n\
         \n\
         [project]\n\
         campaigns_dir = \"campaigns\"\n\
         templates_dir = \"templates\"\n\
         \n\
         # No [smtp] section yet: messages are written as .eml files to the outbox.\n\
         # To send through a relay:\n\
         # [smtp]\n\
         # host = \"smtp.example.com\"\n\
         # port = 587\n\
         # tls = \"starttls\"\n\
         # username = \"news@shop.example\"   # and CARTERO_SMTP_PASSWORD in the environment\n\
         [outbox]\n\
         dir = \"outbox\"\n\
         \n\
         [sender]\n\
         bounce_domain = \"bounces.shop.example\"\n\
         base_url = \"https://news.shop.example\"\n\
         unsubscribe_mailto = \"unsubscribe@bounces.shop.example\"\n\
         message_id_domain = \"shop.example\"\n\
         # Signs VERP and unsubscribe tokens; generated for this project by\n\
         # `cartero init`. Keep it secret (or move it to CARTERO_SENDER_SECRET).\n\
         secret = \"{secret}\"\n"
    )
}

/// The files of a new project, relative to its folder.
fn files(secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("cartero.toml", config(secret)),
        (".gitignore", GITIGNORE.to_string()),
        (
            "contacts.csv",
            include_str!("../../campaigns/contacts.csv").into(),
        ),
        (
            "campaigns/segments.toml",
            include_str!("../../campaigns/segments.toml").into(),
        ),
        (
            "campaigns/welcome.toml",
            include_str!("../../campaigns/welcome.toml").into(),
        ),
        (
            "templates/welcome.html",
            include_str!("../../templates/welcome.html").into(),
        ),
        (
            "templates/welcome.txt",
            include_str!("../../templates/welcome.txt").into(),
        ),
    ]
}

/// 32 random bytes, hex: the signing secret of a new project.
fn fresh_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = args.dir.unwrap_or_else(|| PathBuf::from("."));
    let files = files(&fresh_secret());
    let existing: Vec<String> = files
        .iter()
        .map(|(rel, _)| dir.join(rel))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() {
        anyhow::bail!(
            "{} already has {}: `cartero init` never overwrites anything; choose an empty folder",
            dir.display(),
            existing.join(", ")
        );
    }
    for (rel, text) in &files {
        write_new(&dir.join(rel), text)?;
    }
    let shown = dir.display();
    println!("created a cartero project in {shown}:");
    for (rel, _) in &files {
        println!("  {rel}");
    }
    println!("next:");
    if dir != Path::new(".") {
        println!("  cd {shown}");
    }
    println!(
        "  cartero contacts import contacts.csv --list newsletter --consent-source \"signup form\"\n  \
         cartero campaign check campaigns/welcome.toml\n  \
         cartero campaign send campaigns/welcome.toml    # .eml files in outbox/ until [smtp] is set"
    );
    Ok(ExitCode::SUCCESS)
}

/// Creates `path` (and its folder); fails rather than replace a file that
/// appeared since the check.
fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_project_gets_its_own_secret() {
        let (a, b) = (fresh_secret(), fresh_secret());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        let cfg = crate::config::Config::from_str_with_env(&config(&a), "cartero.toml", &[])
            .expect("the generated cartero.toml is valid");
        assert_eq!(&*cfg.sender.secret, a.as_str());
    }
}
