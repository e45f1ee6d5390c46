//! The build plan: stages and the steps a target needs (being written).
