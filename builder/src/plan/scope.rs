//! The variables in scope inside one stage, with BuildKit's ARG/ENV rules.
//!
//! A stage starts with its base's environment (the image config's `Env`, or everything a parent
//! stage had in scope). `ENV` sets a variable for expansion, for RUN and for the image; `ARG`
//! with a value (its `--build-arg`, its default, or the global ARG of the same name when declared
//! without a default) sets it for expansion and RUN only. Precedence is by declaration order, as
//! BuildKit does it: an `ARG` after an `ENV` of the same name wins, an `ENV` after an `ARG` wins.
//! Within one instruction every substitution sees the values from before it.

use std::collections::{BTreeMap, BTreeSet};

use crate::dockerfile::Location;
use crate::dockerfile::instructions::{ArgDecl, Expander, Instruction, InstructionError};
use crate::dockerfile::shell::{Env, Lexer};

use super::{MetaArg, Plan, PlanError, Step};

/// The variables in scope at one point of a stage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Everything `$VAR` and RUN see, in the order it was set (a later set replaces in place).
    env: Vec<(String, String)>,
    /// ARGs declared in this stage, with their values: RUN gets them, history records them.
    args: Vec<(String, Option<String>)>,
}

impl Scope {
    /// A scope starting from a base environment.
    pub fn new(base_env: Vec<(String, String)>) -> Self {
        Scope {
            env: base_env,
            args: Vec::new(),
        }
    }

    /// The environment in order, as RUN gets it.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The environment as a map, for expansion.
    pub fn env_map(&self) -> BTreeMap<String, String> {
        self.env.iter().cloned().collect()
    }

    /// The ARGs declared in this stage so far.
    pub fn args(&self) -> &[(String, Option<String>)] {
        &self.args
    }

    /// Sets a variable, replacing an earlier value in place.
    pub fn set(&mut self, key: &str, value: &str) {
        match self.env.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.to_owned(),
            None => self.env.push((key.to_owned(), value.to_owned())),
        }
    }

    /// Declares ARGs (BuildKit's `dispatchArg`): the `--build-arg` value wins, then the default
    /// (expanded in this scope), then a global ARG of the same name. The name is expanded too,
    /// as BuildKit's `ArgCommand.Expand` does (`ARG ${src}=x` declares the ARG `$src` names);
    /// the declared names are returned in order.
    pub fn declare_args(
        &mut self,
        decls: &[ArgDecl],
        lexer: &Lexer,
        build_args: &BTreeMap<String, String>,
        meta_args: &[MetaArg],
        location: Location,
    ) -> Result<Vec<String>, PlanError> {
        let mut names = Vec::with_capacity(decls.len());
        for decl in decls {
            let name = ScopeExpander::new(lexer, &self.env_map()).word_at(&decl.name, location)?;
            let value = match (build_args.get(&name), &decl.default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(default)) => {
                    Some(ScopeExpander::new(lexer, &self.env_map()).word_at(default, location)?)
                }
                (None, None) => meta_args
                    .iter()
                    .find(|m| m.name == name)
                    .and_then(|m| m.value.clone()),
            };
            if let Some(v) = &value {
                self.set(&name, v);
            }
            self.args.retain(|(n, _)| n != &name);
            self.args.push((name.clone(), value));
            names.push(name);
        }
        Ok(names)
    }
}

/// Expands words against one environment and remembers which variables it looked up.
#[derive(Debug)]
pub struct ScopeExpander<'a> {
    lexer: &'a Lexer,
    env: &'a dyn Env,
    /// Variables found.
    pub matched: BTreeSet<String>,
    /// Variables referenced but not set.
    pub unmatched: BTreeSet<String>,
}

impl<'a> ScopeExpander<'a> {
    /// An expander over `env` with the Dockerfile's lexer.
    pub fn new(lexer: &'a Lexer, env: &'a dyn Env) -> Self {
        ScopeExpander {
            lexer,
            env,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        }
    }

    /// Expands one word, reporting errors at `location`.
    pub fn word_at(&mut self, word: &str, location: Location) -> Result<String, PlanError> {
        self.word(word).map_err(|e| PlanError::from(e.at(location)))
    }
}

impl Expander for ScopeExpander<'_> {
    fn word(&mut self, word: &str) -> Result<String, InstructionError> {
        let expansion = self
            .lexer
            .process_word_with_matches(word, self.env)
            .map_err(|e| InstructionError::new(e.to_string()))?;
        self.matched.extend(expansion.matched);
        self.unmatched.extend(expansion.unmatched);
        Ok(expansion.value)
    }

    fn words(&mut self, word: &str) -> Result<Vec<String>, InstructionError> {
        // The same lookups as one word, so EXPOSE's names are recorded too.
        self.word(word)?;
        self.lexer
            .process_words(word, self.env)
            .map_err(|e| InstructionError::new(e.to_string()))
    }

    fn raw(&mut self, text: &str) -> Result<String, InstructionError> {
        // BuildKit's heredoc bodies: quotes are plain text, `$` and escapes still work.
        let mut lexer = self.lexer.clone();
        lexer.skip_process_quotes = true;
        lexer
            .process_word(text, self.env)
            .map_err(|e| InstructionError::new(e.to_string()))
    }
}

/// One step of a stage after expansion, with the scope it ran in.
#[derive(Debug, Clone)]
pub struct ExpandedStep {
    /// The step with its variables expanded.
    pub step: Step,
    /// The variables in scope after the step (an ARG or ENV step included): what RUN sees.
    pub scope: Scope,
}

impl Plan {
    /// Expands the steps of one stage given its base environment, applying ARG and ENV in
    /// order. Returns the expanded steps and the scope at the end of the stage (a child stage
    /// built FROM this one starts from it).
    pub fn expand_stage(
        &self,
        index: usize,
        base_env: Vec<(String, String)>,
    ) -> Result<(Vec<ExpandedStep>, Scope), PlanError> {
        self.expand_steps(&self.stages[index].steps, Scope::new(base_env))
    }

    /// Expands `steps` (a stage's, or ONBUILD triggers followed by a stage's) from `scope`.
    pub fn expand_steps(
        &self,
        steps: &[Step],
        mut scope: Scope,
    ) -> Result<(Vec<ExpandedStep>, Scope), PlanError> {
        let lexer = Lexer::new(self.escape);
        let mut out = Vec::new();
        for step in steps {
            let mut expanded = step.clone();
            match &step.instruction {
                Instruction::Arg(decls) => {
                    let names = scope.declare_args(
                        decls,
                        &lexer,
                        &self.options.build_args,
                        &self.meta_args,
                        step.location,
                    )?;
                    let mut decls = decls.clone();
                    for (decl, name) in decls.iter_mut().zip(names) {
                        decl.name = name;
                    }
                    expanded.instruction = Instruction::Arg(decls);
                }
                instruction => {
                    let env = scope.env_map();
                    let mut x = ScopeExpander::new(&lexer, &env);
                    let mut instruction = instruction.clone();
                    instruction
                        .expand(&mut x)
                        .map_err(|e| PlanError::from(e.at(step.location)))?;
                    if let Instruction::Env(pairs) = &instruction {
                        for kv in pairs {
                            scope.set(&kv.key, &kv.value);
                        }
                    }
                    expanded.instruction = instruction;
                }
            }
            out.push(ExpandedStep {
                step: expanded,
                scope: scope.clone(),
            });
        }
        Ok((out, scope))
    }
}
