//! Every processor, one module each.

pub mod attributes;
pub mod batch;
pub mod filter;
pub mod llm_cost;
pub mod memory_limiter;
pub mod probabilistic_sampler;
pub mod ratelimit;
pub mod redaction;
pub mod resource;
pub mod tail_sampling;

use crate::component::ProcessorFactory;

/// The built-in processor types.
pub fn factories() -> Vec<ProcessorFactory> {
    vec![
        attributes::factory(),
        batch::factory(),
        filter::factory(),
        llm_cost::factory(),
        memory_limiter::factory(),
        probabilistic_sampler::factory(),
        ratelimit::factory(),
        redaction::factory(),
        resource::factory(),
        tail_sampling::factory(),
    ]
}
