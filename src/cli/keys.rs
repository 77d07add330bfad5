//! `switchboard keys`: API keys for the call log API and web page. Only a hash of each key is stored,
//! so a key is shown once, when it is created.

use anyhow::Context;

use super::calls::StoreArgs;

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it (the only time it is shown).
    Create {
        /// What the key is for, to recognise it in `keys list`.
        #[arg(long, default_value = "default")]
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List keys (never their secrets).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a key by id: requests with it get 401 from then on.
    Revoke {
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub fn run(cmd: KeysCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match cmd {
            KeysCommand::Create { name, store } => {
                let store = store.open().await?;
                let key = store.create_api_key(&name).await.context("creating the key")?;
                eprintln!(
                    "API key `{}` (id {}) created. It is shown only now; use it as `Authorization: Bearer <key>`:",
                    key.key.name, key.key.id
                );
                println!("{}", key.secret);
            }
            KeysCommand::List { store } => {
                let store = store.open().await?;
                let keys = store.list_api_keys().await.context("listing keys")?;
                println!("{:<38} {:<20} {:<21} last used", "id", "name", "created");
                for k in keys {
                    println!(
                        "{:<38} {:<20} {:<21} {}",
                        k.id,
                        k.name,
                        switchboard_store::format_time(k.created_at),
                        k.last_used_at.map_or("never".into(), switchboard_store::format_time)
                    );
                }
            }
            KeysCommand::Revoke { id, store } => {
                let store = store.open().await?;
                let revoked = store.revoke_api_key(&id).await.context("revoking the key")?;
                anyhow::ensure!(revoked, "no active key with id {id}");
                println!("revoked {id}");
            }
        }
        Ok(())
    })
}
