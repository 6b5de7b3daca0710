//! Every processor, one module each.

pub mod batch;

use crate::component::ProcessorFactory;

/// The built-in processor types.
pub fn factories() -> Vec<ProcessorFactory> {
    vec![batch::factory()]
}
