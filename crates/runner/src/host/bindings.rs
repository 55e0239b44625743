//! Host bindings generated from `wit/alga-extension.wit`. Kept in its own
//! rarely edited module: `bindgen!` costs a minute or two per rebuild.

wasmtime::component::bindgen!({
    world: "runner-ext",
    path: "../../wit",
    imports: {
        // Capabilities that will perform I/O on the host are async so the
        // execution deadline (an outer timeout) can cancel them mid-call.
        "alga:extension/secrets": async | trappable,
        "alga:extension/http": async | trappable,
        "alga:extension/storage": async | trappable,
        "alga:extension/ui-proxy": async | trappable,
        "alga:extension/scheduler": async | trappable,
        "alga:extension/invoicing": async | trappable,
        "alga:extension/clients": async | trappable,
        "alga:extension/services": async | trappable,
        default: trappable,
    },
    exports: { default: async },
});

pub use alga::extension::types;

/// The linked world (`runner-ext`: upstream's `runner` plus `metrics`).
pub use RunnerExt as Runner;
/// A pre-instantiated component of the linked world.
pub type RunnerPre<T> = RunnerExtPre<T>;
