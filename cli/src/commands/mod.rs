//! One module per `kiln` command, and what they share: the global options and the store.

pub mod build;
pub mod check;
pub mod fsck;
pub mod images;
pub mod import;
pub mod inspect;
pub mod load;
pub mod login;
pub mod logout;
pub mod manifest;
pub mod prune;
pub mod pull;
pub mod push;
pub mod rmi;
pub mod run;
pub mod save;
pub mod tag;

mod change;
mod human;
mod lookup;
pub(crate) mod output;
mod ssh;

use std::path::PathBuf;

use anyhow::Context as _;
use kiln_builder::store::Store;

/// Options that apply to every command.
#[derive(Debug)]
pub struct Global {
    /// `--root` / `KILN_ROOT`.
    pub root: Option<PathBuf>,
}

impl Global {
    /// Opens (creating if needed) the store at `--root`, `KILN_ROOT` or the default place.
    pub fn store(&self) -> anyhow::Result<Store> {
        let root = match &self.root {
            Some(root) => root.clone(),
            None => kiln_builder::store::default_root()
                .context("finding the default store directory")?,
        };
        let store = Store::open(&root)
            .with_context(|| format!("opening the store at {}", root.display()))?;
        // Layers a cache import left remote are fetched when a command reads them.
        Ok(store.with_fetcher(pull::default_fetcher()))
    }

    /// The store, only when one already exists: commands that only read (`build --check`)
    /// must not create a store, nor change its directory's mode, as a side effect.
    pub fn existing_store(&self) -> Option<Store> {
        let root = match &self.root {
            Some(root) => root.clone(),
            None => kiln_builder::store::default_root().ok()?,
        };
        if !root.join("oci").join("index.json").is_file() {
            return None;
        }
        Store::open(&root).ok()
    }
}
