// Shared by the host library and `host/build.rs` (which `include!`s it) so that
// the built-in strategies precompiled at build time match the engine that runs
// them. Any setting that changes generated code belongs here and nowhere else.

/// How a decision's CPU time is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Metering {
    /// Deterministic instruction counting (`Store::set_fuel`). The default:
    /// measured no slower than epochs here, and a budget means the same on
    /// every machine.
    #[default]
    Fuel,
    /// Wall-clock ticks from a background thread (`Engine::increment_epoch`).
    Epoch,
}

/// The wasmtime configuration every strategy runs under.
pub fn engine_config(metering: Metering) -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.strategy(wasmtime::Strategy::Cranelift);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    // Core modules only: the component model is 5-20x slower per call.
    config.wasm_component_model(false);
    match metering {
        Metering::Fuel => config.consume_fuel(true),
        Metering::Epoch => config.epoch_interruption(true),
    };
    config
}
