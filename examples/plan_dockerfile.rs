//! Parses and plans a Dockerfile with the `kiln-builder` library and prints each stage the
//! target needs with its typed instructions: the front end without the CLI.
//!
//! `cargo run --example plan_dockerfile -- examples/seed/env-cmd/Dockerfile`

use std::process::ExitCode;

use kiln_builder::dockerfile::parse;
use kiln_builder::plan::{Base, Plan, PlanOptions};

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: plan_dockerfile DOCKERFILE");
        return ExitCode::from(2);
    };
    let source = match std::fs::read_to_string(&path) {
        Ok(source) => source,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let plan = parse(&source)
        .map_err(|e| (e.message, e.location))
        .and_then(|file| {
            Plan::new(&file, PlanOptions::default()).map_err(|e| (e.message, e.location))
        });
    let plan = match plan {
        Ok(plan) => plan,
        Err((message, location)) => {
            eprintln!("{path}:{}: {message}", location.start_line);
            return ExitCode::FAILURE;
        }
    };
    for &index in &plan.order {
        let stage = &plan.stages[index];
        let base = match &stage.base {
            Base::Scratch => "scratch".to_owned(),
            Base::Stage(i) => plan.stages[*i].display_name(),
            Base::Image(reference) => reference.to_string(),
        };
        println!("{} FROM {base}", stage.display_name());
        for step in &stage.steps {
            println!(
                "  line {:>3}: {:?}",
                step.location.start_line, step.instruction
            );
        }
    }
    ExitCode::SUCCESS
}
