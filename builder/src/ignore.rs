//! `.dockerignore` matching with moby/patternmatcher semantics (being written).
