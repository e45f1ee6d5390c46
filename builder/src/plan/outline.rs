//! What `--call=outline` and `--call=targets` report, as BuildKit's `outline` and `targets`
//! subrequests do: the stages with their descriptions, and for a target the build args it
//! uses (with their defaults and descriptions) and the secrets and SSH agents its RUNs mount.
//!
//! Descriptions follow BuildKit's convention: a comment line directly above a FROM or ARG that
//! starts with the stage's or argument's name followed by a space; the rest of the line is the
//! description (`# base the image everything builds on`).

use std::collections::BTreeSet;

use super::{Plan, ScopeExpander};
use crate::dockerfile::instructions::{Instruction, MountType, RunMount};
use crate::dockerfile::shell::Lexer;
use crate::dockerfile::{Dockerfile, Location, Node};

/// One stage, for `--call=targets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `AS name` (lowercased), if it has one.
    pub name: Option<String>,
    /// The description from the comment above its FROM.
    pub description: String,
    /// Whether a build without `--target` builds it (the last stage).
    pub default: bool,
    /// The FROM as written.
    pub base: String,
    /// Its FROM line.
    pub location: Location,
}

/// A build arg a target uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlineArg {
    /// Its name.
    pub name: String,
    /// Its value: the `--build-arg`, else its default, else none.
    pub value: Option<String>,
    /// The description from the comment above its ARG.
    pub description: String,
    /// Where it is declared.
    pub location: Location,
}

/// A secret or SSH agent a target's RUNs mount.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Need {
    /// The id (`--secret id=…`, `--ssh id`).
    pub id: String,
    /// Whether the RUN fails without it (`required=true`).
    pub required: bool,
}

/// What `--call=outline` reports for the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outline {
    /// The target stage.
    pub target: Target,
    /// The build args it uses: the global ARGs its stages' FROM lines read or redeclare, then
    /// the ARGs its stages declare, in Dockerfile order, each once.
    pub args: Vec<OutlineArg>,
    /// The secrets its RUNs mount.
    pub secrets: Vec<Need>,
    /// The SSH agents its RUNs mount.
    pub ssh: Vec<Need>,
}

/// BuildKit's `getComment`: the first comment line that starts with `name` and a space.
fn description(comments: &[String], name: &str) -> String {
    if name.is_empty() {
        return String::new();
    }
    let prefix = format!("{name} ");
    comments
        .iter()
        .find_map(|c| c.strip_prefix(&prefix))
        .unwrap_or_default()
        .to_owned()
}

fn node_at(file: &Dockerfile, location: Location) -> Option<&Node> {
    file.instructions
        .iter()
        .find(|n| n.location.start_line == location.start_line)
}

impl Plan {
    /// Every stage, for `--call=targets`.
    pub fn targets(&self, file: &Dockerfile) -> Vec<Target> {
        let last = self.stages.len().saturating_sub(1);
        self.stages
            .iter()
            .map(|stage| {
                let comments = node_at(file, stage.location)
                    .map(|n| n.comments.as_slice())
                    .unwrap_or_default();
                Target {
                    name: stage.name.clone(),
                    description: description(comments, stage.name.as_deref().unwrap_or("")),
                    default: stage.index == last,
                    base: stage.base_text.clone(),
                    location: stage.location,
                }
            })
            .collect()
    }

    /// The target's outline (see [`Outline`]).
    pub fn outline(&self, file: &Dockerfile) -> Outline {
        let target = self.targets(file).swap_remove(self.target);
        let mut args: Vec<OutlineArg> = Vec::new();
        let mut seen = BTreeSet::new();
        let global_nodes: Vec<&Node> = file
            .instructions
            .iter()
            .take_while(|n| !n.keyword.eq_ignore_ascii_case("from"))
            .collect();
        // Names the needed stages read in FROM or redeclare.
        let mut used: BTreeSet<String> = BTreeSet::new();
        let lexer = Lexer::new(self.escape);
        for &i in &self.order {
            let stage = &self.stages[i];
            if let Some(node) = node_at(file, stage.location)
                && let Ok(Instruction::From(from)) = Instruction::from_node(node)
            {
                let env = super::meta_env(&self.meta_args);
                let mut x = ScopeExpander::new(&lexer, &env);
                for word in std::iter::once(&from.image).chain(&from.platform) {
                    let _ = x.word_at(word, stage.location);
                }
                used.extend(x.matched.into_iter().chain(x.unmatched));
            }
            for step in &stage.steps {
                if let Instruction::Arg(decls) = &step.instruction {
                    used.extend(decls.iter().map(|d| d.name.clone()));
                }
            }
        }
        for node in global_nodes {
            if let Ok(Instruction::Arg(decls)) = Instruction::from_node(node) {
                for decl in decls {
                    if used.contains(&decl.name) && seen.insert(decl.name.clone()) {
                        let value = self
                            .meta_args
                            .iter()
                            .find(|m| m.name == decl.name)
                            .and_then(|m| m.value.clone());
                        args.push(OutlineArg {
                            description: description(&node.comments, &decl.name),
                            name: decl.name,
                            value,
                            location: node.location,
                        });
                    }
                }
            }
        }
        let mut secrets = BTreeSet::new();
        let mut ssh = BTreeSet::new();
        for &i in &self.order {
            for step in &self.stages[i].steps {
                match &step.instruction {
                    Instruction::Arg(decls) => {
                        let comments = node_at(file, step.location)
                            .map(|n| n.comments.as_slice())
                            .unwrap_or_default();
                        for decl in decls {
                            if seen.insert(decl.name.clone()) {
                                let value = self
                                    .options
                                    .build_args
                                    .get(&decl.name)
                                    .cloned()
                                    .or_else(|| decl.default.clone());
                                args.push(OutlineArg {
                                    description: description(comments, &decl.name),
                                    name: decl.name.clone(),
                                    value,
                                    location: step.location,
                                });
                            }
                        }
                    }
                    Instruction::Run(run) => {
                        for spec in &run.mounts {
                            let Ok(mount) = RunMount::parse(spec, &mut |v| Ok(v.to_owned())) else {
                                continue;
                            };
                            match mount.kind {
                                MountType::Secret => {
                                    secrets.insert(Need {
                                        id: mount.secret_id(),
                                        required: mount.required,
                                    });
                                }
                                MountType::Ssh => {
                                    ssh.insert(Need {
                                        id: mount.id.clone().unwrap_or_else(|| "default".into()),
                                        required: mount.required,
                                    });
                                }
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        Outline {
            target,
            args,
            secrets: secrets.into_iter().collect(),
            ssh: ssh.into_iter().collect(),
        }
    }
}
