//! The checks BuildKit runs while it parses a Dockerfile, over every stage whatever the target:
//! NoEmptyContinuation (from the parser's warnings), StageNameCasing, FromAsCasing,
//! MaintainerDeprecated and InvalidDefinitionDescription per instruction, then, when every
//! instruction is valid, the file-wide ConsistentInstructionCasing, DuplicateStageName and
//! ReservedStageName.
//!
//! Per-instruction rules stop at the first instruction that is not valid, as BuildKit's parser
//! stops there: warnings found before it are still reported with the error.

use std::collections::BTreeSet;

use super::{
    CONSISTENT_INSTRUCTION_CASING, DUPLICATE_STAGE_NAME, FROM_AS_CASING, Findings,
    INVALID_DEFINITION_DESCRIPTION, MAINTAINER_DEPRECATED, NO_EMPTY_CONTINUATION,
    RESERVED_STAGE_NAME, STAGE_NAME_CASING,
};
use crate::dockerfile::instructions::Instruction;
use crate::dockerfile::parser::go_quote;
use crate::dockerfile::{Args, Dockerfile, Location, Node, WarningKind};

/// Stage names BuildKit reserves.
const RESERVED_NAMES: [&str; 2] = ["scratch", "context"];

/// Runs the parse-time rules; returns whether every instruction is valid.
pub(super) fn check(file: &Dockerfile, out: &mut Findings<'_>) -> bool {
    for warning in &file.warnings {
        match warning.kind {
            // BuildKit reports it at the instruction's last line.
            WarningKind::EmptyContinuation => out.file_level(
                &NO_EMPTY_CONTINUATION,
                "Empty continuation line".to_owned(),
                Location::line(warning.location.end_line),
            ),
        }
    }
    for node in &file.instructions {
        let Ok(instruction) = Instruction::from_node(node) else {
            return false;
        };
        per_instruction(node, &instruction, out);
    }
    file_wide(file, out);
    true
}

fn per_instruction(node: &Node, instruction: &Instruction, out: &mut Findings<'_>) {
    let location = node.location;
    match instruction {
        Instruction::From(from) => {
            let words = words(node);
            if let [_, as_keyword, name] = words {
                if name.to_lowercase() != *name {
                    out.at(
                        &node.comments,
                        &STAGE_NAME_CASING,
                        format!("Stage name '{name}' should be lowercase"),
                        location,
                    );
                }
                if !as_matches_from(&node.keyword, as_keyword) {
                    out.at(
                        &node.comments,
                        &FROM_AS_CASING,
                        format!(
                            "'{as_keyword}' and '{}' keywords' casing do not match",
                            node.keyword
                        ),
                        location,
                    );
                }
            }
            if let Some(name) = &from.stage_name
                && !describes(&node.comments, &[name.as_str()])
            {
                out.at(
                    &node.comments,
                    &INVALID_DEFINITION_DESCRIPTION,
                    format!("Comment for FROM should follow the format: `# {name} <description>`"),
                    location,
                );
            }
        }
        Instruction::Maintainer(_) => out.at(
            &node.comments,
            &MAINTAINER_DEPRECATED,
            "Maintainer instruction is deprecated in favor of using label".to_owned(),
            location,
        ),
        Instruction::Arg(decls) => {
            let names: Vec<&str> = decls.iter().map(|d| d.name.as_str()).collect();
            if !describes(&node.comments, &names) {
                let name = match names.as_slice() {
                    [one] => one,
                    _ => "<arg_key>",
                };
                out.at(
                    &node.comments,
                    &INVALID_DEFINITION_DESCRIPTION,
                    format!("Comment for ARG should follow the format: `# {name} <description>`"),
                    location,
                );
            }
        }
        _ => {}
    }
}

/// The words of a FROM as written.
fn words(node: &Node) -> &[String] {
    match &node.args {
        Args::Words(words) => words,
        _ => &[],
    }
}

/// BuildKit's `doesFromCaseMatchAsCase`: only an all-lower or all-upper FROM keyword asks the AS
/// keyword to match it (a mixed one is ConsistentInstructionCasing's business).
fn as_matches_from(from: &str, as_keyword: &str) -> bool {
    if from == from.to_lowercase() {
        as_keyword == as_keyword.to_lowercase()
    } else if from == from.to_uppercase() {
        as_keyword == as_keyword.to_uppercase()
    } else {
        true
    }
}

/// Whether the description comments before a stage or ARG are well formed: none at all, or a
/// last line whose first word is one of the names.
fn describes(comments: &[String], names: &[&str]) -> bool {
    let Some(last) = comments.last() else {
        return true;
    };
    let first = last.split(' ').next().unwrap_or_default();
    names.contains(&first)
}

fn file_wide(file: &Dockerfile, out: &mut Findings<'_>) {
    // Global ARGs before the first FROM belong to no stage and are not counted.
    let in_stages: Vec<&Node> = file
        .instructions
        .iter()
        .skip_while(|n| !n.keyword.eq_ignore_ascii_case("from"))
        .collect();
    let (mut lower, mut upper) = (0usize, 0usize);
    for node in &in_stages {
        if node.keyword == node.keyword.to_lowercase() {
            lower += 1;
        } else if node.keyword == node.keyword.to_uppercase() {
            upper += 1;
        }
    }
    let (majority, name) = if lower > upper {
        (str::to_lowercase as fn(&str) -> String, "lowercase")
    } else {
        (str::to_uppercase as fn(&str) -> String, "uppercase")
    };
    let mut stage_names = BTreeSet::new();
    for node in in_stages {
        if node.keyword != majority(&node.keyword) {
            out.file_level(
                &CONSISTENT_INSTRUCTION_CASING,
                format!(
                    "Command '{}' should match the case of the command majority ({name})",
                    node.keyword
                ),
                node.location,
            );
        }
        let Ok(Instruction::From(from)) = Instruction::from_node(node) else {
            continue;
        };
        let Some(stage) = from.stage_name else {
            continue;
        };
        if RESERVED_NAMES.contains(&stage.as_str()) {
            out.file_level(
                &RESERVED_STAGE_NAME,
                format!(
                    "Stage name should not use the same name as reserved stage {}",
                    go_quote(&stage)
                ),
                node.location,
            );
        }
        if !stage_names.insert(stage.clone()) {
            out.file_level(
                &DUPLICATE_STAGE_NAME,
                format!(
                    "Duplicate stage name {}, stage names should be unique",
                    go_quote(&stage)
                ),
                node.location,
            );
        }
    }
}
