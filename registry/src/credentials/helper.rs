//! The docker credential-helper protocol: `docker-credential-<name> get|store|erase`.
//!
//! `get` reads the server URL on stdin and prints `{"ServerURL","Username","Secret"}`; a helper
//! that has nothing for the server exits non-zero saying "credentials not found". `store` reads
//! that JSON on stdin; `erase` reads the server URL. A username of `<token>` means the secret
//! is an identity (refresh) token. A helper's output on failure is shown truncated and never
//! includes what was sent to it.

use std::io::Write;
use std::process::{Command, Stdio};

use super::CredentialsError;
use crate::auth::Credentials;

/// What helpers print when they hold nothing for a server (docker-credential-helpers'
/// `ErrCredentialsNotFound`).
const NOT_FOUND: &str = "credentials not found in native keychain";

/// The username helpers use for identity tokens.
const TOKEN_USERNAME: &str = "<token>";

/// How much of a failing helper's output is shown.
const MESSAGE_MAX: usize = 200;

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperCredentials {
    #[serde(rename = "ServerURL", default)]
    server_url: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    secret: String,
}

/// Runs `docker-credential-<helper> <action>` with `input` on stdin; its stdout on success.
fn run(
    helper: &str,
    action: &str,
    input: &[u8],
) -> Result<Result<Vec<u8>, String>, CredentialsError> {
    let program = format!("docker-credential-{helper}");
    let spawn_error = |source| CredentialsError::HelperSpawn {
        helper: program.clone(),
        source,
    };
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input fails below with its own message.
        let _ = stdin.write_all(input);
    }
    let output = child.wait_with_output().map_err(spawn_error)?;
    if output.status.success() {
        return Ok(Ok(output.stdout));
    }
    let mut message = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if message.is_empty() {
        message = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    }
    let message: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MESSAGE_MAX)
        .collect();
    Ok(Err(message))
}

/// The credentials `helper` holds for `server`, if any.
pub fn get(helper: &str, server: &str) -> Result<Option<Credentials>, CredentialsError> {
    match run(helper, "get", server.as_bytes())? {
        Ok(stdout) => {
            let found: HelperCredentials =
                serde_json::from_slice(&stdout).map_err(|_| CredentialsError::HelperOutput {
                    helper: format!("docker-credential-{helper}"),
                })?;
            if found.secret.is_empty() {
                return Ok(None);
            }
            Ok(Some(if found.username == TOKEN_USERNAME {
                Credentials::IdentityToken {
                    token: found.secret,
                }
            } else {
                Credentials::Basic {
                    username: found.username,
                    password: found.secret,
                }
            }))
        }
        Err(message) if message.contains(NOT_FOUND) => Ok(None),
        Err(message) => Err(CredentialsError::HelperFailed {
            helper: format!("docker-credential-{helper}"),
            action: "get",
            message,
        }),
    }
}

/// Stores `credentials` for `server` in `helper`.
pub fn store(
    helper: &str,
    server: &str,
    credentials: &Credentials,
) -> Result<(), CredentialsError> {
    let (username, secret) = match credentials {
        Credentials::Basic { username, password } => (username.clone(), password.clone()),
        Credentials::IdentityToken { token } => (TOKEN_USERNAME.to_owned(), token.clone()),
    };
    let input = serde_json::to_vec(&HelperCredentials {
        server_url: server.to_owned(),
        username,
        secret,
    })
    .map_err(|_| CredentialsError::HelperOutput {
        helper: format!("docker-credential-{helper}"),
    })?;
    run(helper, "store", &input)?
        .map(drop)
        .map_err(|message| CredentialsError::HelperFailed {
            helper: format!("docker-credential-{helper}"),
            action: "store",
            message,
        })
}

/// Erases what `helper` holds for `server`; a helper that held nothing is not an error.
pub fn erase(helper: &str, server: &str) -> Result<(), CredentialsError> {
    match run(helper, "erase", server.as_bytes())? {
        Ok(_) => Ok(()),
        Err(message) if message.contains(NOT_FOUND) => Ok(()),
        Err(message) => Err(CredentialsError::HelperFailed {
            helper: format!("docker-credential-{helper}"),
            action: "erase",
            message,
        }),
    }
}
