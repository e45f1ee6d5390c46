//! `kiln import --change`: Dockerfile instructions applied to an image config, as
//! `docker import --change` (Docker's `BuildFromConfig`) applies them.
//!
//! The changes are joined with newlines and parsed as one Dockerfile by kiln's own front end,
//! so the syntax (JSON and shell forms, quoting, line continuations) is exactly the
//! Dockerfile's. The instructions docker accepts here are applied in order: CMD, ENTRYPOINT,
//! ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR; any other is an
//! error naming it. Words are expanded with the config's ENV as it stands at that change, as a
//! Dockerfile would expand them; CMD and ENTRYPOINT are not expanded (their shell does that).

use anyhow::{anyhow, bail};
use kiln_builder::dockerfile::instructions::Instruction;
use kiln_builder::dockerfile::parse;
use kiln_builder::dockerfile::shell::Lexer;
use kiln_builder::image::ImageConfig;
use kiln_builder::ops::ImageState;
use kiln_builder::plan::{ScopeExpander, lower_meta};

/// The instructions `--change` accepts, as docker lists them.
const ALLOWED: &str =
    "CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR";

/// Parses the `--change` values into instructions, refusing those docker refuses.
pub fn parse_changes(changes: &[String]) -> anyhow::Result<Vec<Instruction>> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let text = changes.join("\n");
    let file = parse(&text).map_err(|e| anyhow!("invalid --change: {}", e.message))?;
    let mut out = Vec::new();
    for node in &file.instructions {
        let instruction =
            Instruction::from_node(node).map_err(|e| anyhow!("invalid --change: {}", e.message))?;
        match instruction {
            Instruction::Cmd(_)
            | Instruction::Entrypoint(_)
            | Instruction::Env(_)
            | Instruction::Expose(_)
            | Instruction::Healthcheck(_)
            | Instruction::Label(_)
            | Instruction::OnBuild(_)
            | Instruction::StopSignal(_)
            | Instruction::User(_)
            | Instruction::Volume(_)
            | Instruction::Workdir(_) => out.push(instruction),
            other => bail!(
                "{} is not a valid --change instruction (allowed: {ALLOWED})",
                other.keyword()
            ),
        }
    }
    Ok(out)
}

/// Applies `changes` in order to `config`, as a Dockerfile's metadata instructions would
/// (kiln's builder does the work; docker records no history for them, and neither does kiln).
pub fn apply(config: &mut ImageConfig, changes: &[Instruction]) -> anyhow::Result<()> {
    let mut state = ImageState::new(std::mem::replace(config, ImageConfig::new("", "")), None);
    for change in changes {
        let mut change = change.clone();
        let env = state.config.config.env.clone();
        let lexer = Lexer::new('\\');
        let mut expander = ScopeExpander::new(&lexer, &env);
        change
            .expand(&mut expander)
            .map_err(|e| anyhow!("--change {}: {}", change.keyword(), e.message))?;
        let keyword = change.keyword();
        let op = lower_meta(change).map_err(|e| anyhow!("--change {keyword}: {e}"))?;
        state.change(&op);
    }
    *config = state.config;
    Ok(())
}
