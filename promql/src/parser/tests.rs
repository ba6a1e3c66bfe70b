//! Unit tests.
use super::*;
