//! Tests for the Prometheus text-format parser.

use super::*;
