//! Test fixtures: real node processes and the real CLI.
