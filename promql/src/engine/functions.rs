//! PromQL functions.

use super::eval::{Ctx, Evaluator, IVal};
use crate::error::{Error, Result};
use crate::parser::Call;

/// Evaluates a function call at step `i`.
pub(crate) fn call(_ev: &mut Evaluator, c: &Call, _ctx: &Ctx, _i: usize) -> Result<IVal> {
    Err(Error::Eval(format!(
        "function {:?} is not supported yet",
        c.func.name
    )))
}
