//! Loading and calling one policy component under wasmtime.
//!
//! One [`Engine`] and one [`Linker`] per process. A loaded policy keeps one
//! live [`Store`] and instance ([`Host::call_live`]): fuel is set afresh
//! before every call, the memory cap stays, and the store is dropped after
//! any error (a trapped store is poisoned) and every [`RECYCLE_EVERY`] calls,
//! then rebuilt from the cached `InstancePre` (about 40 µs). A reused call
//! costs well under a microsecond; a fresh instance per call cost about
//! 50 µs. [`Host::call`] still gives one call a store of its own (`policy
//! check`, the load-time `describe()`). The component sees an empty WASI
//! context: no preopened dirs, no env, no args, no network, stdio going
//! nowhere (stdout is the MCP channel).
//!
//! Every released WIT version has a bindings module here, generated from its
//! frozen folder (`wit/vX.Y.Z/`), and a [`WitVersion`]. A component is loaded
//! in the version it exports; the rest of the host speaks the current
//! version's types, and [`Instance`] converts for an older component.
//!
//! This module never decides a fallback; it reports errors to `runtime`.

use std::path::Path;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::PolicyError;

mod v0_1_0;

/// WIT 0.2.0 (`wit/v0.2.0/`), the current version: the host's own types.
mod v0_2_0 {
    wasmtime::component::bindgen!({
        world: "decider",
        path: "../wit/v0.2.0",
        additional_derives: [PartialEq, Eq],
    });
}

pub use v0_2_0::exports::mem0_queue::policy::policy::{
    Alert, BreakerDecision, BreakerInput, Decision, EntryState, FailedSummary, HttpFailure,
    Identity, Level, Operation, Outcome, QueueStats, Rejection,
};

/// The versions of the `mem0-queue:policy` WIT package this host loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WitVersion {
    /// The first release: no operation kind, no unreachable statistics.
    V0_1_0,
    /// The current version.
    V0_2_0,
}

impl WitVersion {
    /// Every version this host loads, oldest first.
    pub const ALL: [WitVersion; 2] = [WitVersion::V0_1_0, WitVersion::V0_2_0];

    /// The version the host's own types (and the shipped policies) speak.
    pub const CURRENT: WitVersion = WitVersion::V0_2_0;

    /// "0.1.0", "0.2.0".
    pub const fn as_str(self) -> &'static str {
        match self {
            WitVersion::V0_1_0 => "0.1.0",
            WitVersion::V0_2_0 => "0.2.0",
        }
    }

    /// The interface a component of this version exports.
    pub const fn export(self) -> &'static str {
        match self {
            WitVersion::V0_1_0 => "mem0-queue:policy/policy@0.1.0",
            WitVersion::V0_2_0 => "mem0-queue:policy/policy@0.2.0",
        }
    }
}

impl std::fmt::Display for WitVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The current WIT package version: the host's types, the shipped policies.
pub const WIT_VERSION: &str = WitVersion::CURRENT.as_str();

/// The policy interface's name without its version.
const EXPORT_PREFIX: &str = "mem0-queue:policy/policy@";

/// Fuel for one call. Ten million units is about 10 ms of guest code on this
/// class of machine: a thousand times what the default policy needs for a
/// decision, and short enough that a looping policy cannot stall a save.
pub const FUEL_PER_CALL: u64 = 10_000_000;

/// Extra fuel per item of a list argument (the failed summaries at a run
/// start), so a queue with 100,000 failed entries is not starved.
pub const FUEL_PER_ITEM: u64 = 2_000;

/// Linear memory a policy may grow to. 64 MiB holds the summaries of 100,000
/// failed entries several times over; a memory bomb traps here.
pub const MEMORY_LIMIT: usize = 64 << 20;

/// How many calls one live store and instance serve before they are
/// dropped and rebuilt (the runtime also recycles them at every worker run
/// start, and after any error).
///
/// Between calls a guest keeps its linear memory, globals and allocator
/// state: a policy could count, cache or remember entries, so decision N
/// may differ from decision 1. The recycle bounds that drift to 1,000
/// decisions. The number: rebuilding costs about 40 µs, so 1,000 calls
/// amortise it to 0.04 µs each, a tenth of a reused call (0.3-0.5 µs);
/// fewer would start to show in the decision cost, more would only widen
/// the window. A guest growing its memory call after call meets the
/// [`MEMORY_LIMIT`] cap (cumulative over the store's life), traps, and the
/// store is rebuilt; the default decides that one call.
pub const RECYCLE_EVERY: u32 = 1_000;

/// The store data of one call.
pub struct Ctx {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for Ctx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The process-wide engine and linker.
pub struct Host {
    engine: Engine,
    linker: Linker<Ctx>,
}

/// An instantiable component, in the bindings of the version it exports.
enum Pre {
    V0_1_0(v0_1_0::DeciderPre<Ctx>),
    V0_2_0(v0_2_0::DeciderPre<Ctx>),
}

/// A live store and instance of a loaded policy, reused across calls.
struct Live {
    store: Store<Ctx>,
    instance: Instance,
    /// Calls made on this store.
    calls: u32,
}

/// A loaded, instantiable policy.
pub struct Loaded {
    pre: Pre,
    /// The store and instance reused across calls; `None` until the first
    /// call and after a recycle.
    live: Option<Live>,
    /// What the policy says of itself.
    pub identity: Identity,
    /// The SHA-256 of the component's bytes, hex.
    pub hash: String,
    /// Whether it came from the compiled cache.
    pub from_cache: bool,
}

impl Loaded {
    /// Drops the live store and instance: the next call starts from a fresh
    /// instance. Called after any error, at each worker run start, and after
    /// a panic on the policy thread.
    pub fn recycle(&mut self) {
        self.live = None;
    }

    /// The WIT version the component exports (and says it targets).
    pub fn wit(&self) -> WitVersion {
        match self.pre {
            Pre::V0_1_0(_) => WitVersion::V0_1_0,
            Pre::V0_2_0(_) => WitVersion::V0_2_0,
        }
    }
}

/// One instance of a policy, called in the current version's types whatever
/// version it exports. The methods are named after the generated ones.
pub struct Instance(Decider);

/// An instance, in the bindings of the version it exports.
enum Decider {
    V0_1_0(v0_1_0::Decider),
    V0_2_0(v0_2_0::Decider),
}

type Answer<T> = wasmtime::Result<Result<T, String>>;

impl Instance {
    pub fn call_describe(&self, store: &mut Store<Ctx>) -> wasmtime::Result<Identity> {
        match &self.0 {
            Decider::V0_1_0(d) => v0_1_0::describe(d, store),
            Decider::V0_2_0(d) => d.mem0_queue_policy_policy().call_describe(store),
        }
    }

    pub fn call_on_failure(
        &self,
        store: &mut Store<Ctx>,
        entry: EntryState,
        outcome: &Outcome,
        random: u32,
    ) -> Answer<Decision> {
        match &self.0 {
            Decider::V0_1_0(d) => v0_1_0::on_failure(d, store, entry, outcome, random),
            Decider::V0_2_0(d) => d
                .mem0_queue_policy_policy()
                .call_on_failure(store, entry, outcome, random),
        }
    }

    pub fn call_on_run_start(
        &self,
        store: &mut Store<Ctx>,
        failed: &[FailedSummary],
        random: u32,
    ) -> Answer<Vec<String>> {
        match &self.0 {
            Decider::V0_1_0(d) => v0_1_0::on_run_start(d, store, failed, random),
            Decider::V0_2_0(d) => d
                .mem0_queue_policy_policy()
                .call_on_run_start(store, failed, random),
        }
    }

    pub fn call_breaker(
        &self,
        store: &mut Store<Ctx>,
        input: BreakerInput,
    ) -> Answer<BreakerDecision> {
        match &self.0 {
            Decider::V0_1_0(d) => v0_1_0::breaker(d, store, input),
            Decider::V0_2_0(d) => d.mem0_queue_policy_policy().call_breaker(store, input),
        }
    }

    pub fn call_alerts(&self, store: &mut Store<Ctx>, stats: QueueStats) -> Answer<Vec<Alert>> {
        match &self.0 {
            Decider::V0_1_0(d) => v0_1_0::alerts(d, store, stats),
            Decider::V0_2_0(d) => d.mem0_queue_policy_policy().call_alerts(store, stats),
        }
    }
}

impl Host {
    pub fn new() -> Result<Self, PolicyError> {
        let mut config = Config::new();
        config.consume_fuel(true);
        // A deep recursion traps instead of overflowing the host's stack.
        config.max_wasm_stack(512 << 10);
        let engine = Engine::new(&config).map_err(|e| PolicyError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| PolicyError::Engine(format!("{e:#}")))?;
        Ok(Self { engine, linker })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads a component from its bytes, through the compiled cache in
    /// `cache_dir` when one is given.
    pub fn load(&self, bytes: &[u8], cache_dir: Option<&Path>) -> Result<Loaded, PolicyError> {
        let hash = hex(&Sha256::digest(bytes));
        let (component, from_cache) = match cache_dir {
            Some(dir) => super::cache::load(&self.engine, bytes, &hash, dir)?,
            None => (super::cache::compile(&self.engine, bytes)?, false),
        };
        let wit = check_version(&self.engine, &component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| PolicyError::WrongWorld(format!("{e:#}")))?;
        let wrong_world = |e: wasmtime::Error| PolicyError::WrongWorld(format!("{e:#}"));
        let pre = match wit {
            WitVersion::V0_1_0 => Pre::V0_1_0(v0_1_0::DeciderPre::new(pre).map_err(wrong_world)?),
            WitVersion::V0_2_0 => Pre::V0_2_0(v0_2_0::DeciderPre::new(pre).map_err(wrong_world)?),
        };
        let mut loaded = Loaded {
            pre,
            live: None,
            identity: Identity {
                name: String::new(),
                version: String::new(),
                wit_version: String::new(),
            },
            hash,
            from_cache,
        };
        let identity = self.call(&loaded, 0, |d, s| d.call_describe(s))?;
        if identity.wit_version != wit.as_str() {
            return Err(PolicyError::Version(format!(
                "the policy says it targets WIT {}, but it exports {}",
                identity.wit_version,
                wit.export()
            )));
        }
        loaded.identity = identity;
        Ok(loaded)
    }

    /// Runs one call in a fresh store with `FUEL_PER_CALL + items *
    /// FUEL_PER_ITEM` fuel and the memory limit.
    pub fn call<R>(
        &self,
        loaded: &Loaded,
        items: usize,
        f: impl FnOnce(&Instance, &mut Store<Ctx>) -> wasmtime::Result<R>,
    ) -> Result<R, PolicyError> {
        let (mut store, instance) = self.instantiate(&loaded.pre, items)?;
        set_fuel(&mut store, items)?;
        f(&instance, &mut store).map_err(|e| classify_trap(&e))
    }

    /// Runs one call on `loaded`'s live store and instance, made first if
    /// there is none or it has served [`RECYCLE_EVERY`] calls. The fuel is
    /// set to `FUEL_PER_CALL + items * FUEL_PER_ITEM` before the call (set,
    /// not added: what a call leaves is never carried over); the memory
    /// limit is the store's, for its whole life. Any error drops the store:
    /// after a trap it can never be entered again.
    pub fn call_live<R>(
        &self,
        loaded: &mut Loaded,
        items: usize,
        f: impl FnOnce(&Instance, &mut Store<Ctx>) -> wasmtime::Result<R>,
    ) -> Result<R, PolicyError> {
        let live = match &mut loaded.live {
            Some(live) if live.calls < RECYCLE_EVERY => live,
            slot => {
                // The old store (if any) is dropped before the new one is made.
                *slot = None;
                let (store, instance) = self.instantiate(&loaded.pre, items)?;
                slot.insert(Live {
                    store,
                    instance,
                    calls: 0,
                })
            }
        };
        live.calls += 1;
        let result = set_fuel(&mut live.store, items)
            .and_then(|()| f(&live.instance, &mut live.store).map_err(|e| classify_trap(&e)));
        if result.is_err() {
            loaded.live = None;
        }
        result
    }

    /// A fresh store with the memory limit, and `pre` instantiated in it
    /// (its start function runs on the call's fuel).
    fn instantiate(&self, pre: &Pre, items: usize) -> Result<(Store<Ctx>, Instance), PolicyError> {
        let ctx = Ctx {
            // Empty: no preopens, no env, no args, no network; stdio is a sink.
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(MEMORY_LIMIT)
                .instances(16)
                .trap_on_grow_failure(true)
                .build(),
        };
        let mut store = Store::new(&self.engine, ctx);
        store.limiter(|c| &mut c.limits);
        set_fuel(&mut store, items)?;
        let instance = match pre {
            Pre::V0_1_0(pre) => pre.instantiate(&mut store).map(Decider::V0_1_0),
            Pre::V0_2_0(pre) => pre.instantiate(&mut store).map(Decider::V0_2_0),
        }
        .map(Instance)
        .map_err(|e| PolicyError::Trap(format!("instantiation: {e:#}")))?;
        Ok((store, instance))
    }
}

/// Sets (does not add) the fuel of one call on `items` list items.
fn set_fuel(store: &mut Store<Ctx>, items: usize) -> Result<(), PolicyError> {
    let fuel = FUEL_PER_CALL.saturating_add(FUEL_PER_ITEM.saturating_mul(items as u64));
    store
        .set_fuel(fuel)
        .map_err(|e| PolicyError::Engine(format!("{e:#}")))
}

fn classify_trap(e: &wasmtime::Error) -> PolicyError {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::OutOfFuel) => {
            PolicyError::OutOfFuel("the policy ran out of fuel (a loop?)".into())
        }
        _ => {
            // The root cause names what the guest did ("wasm trap: ...");
            // the outer context is only "error while executing at ...".
            let text = match e.downcast_ref::<wasmtime::Trap>() {
                Some(trap) => format!("wasm trap: {trap}"),
                None => e.root_cause().to_string(),
            };
            if text.contains("memory") && text.contains("limit")
                || text.contains("grow")
                || text.contains("forcing trap when growing memory")
            {
                PolicyError::Memory(first_line(&text))
            } else {
                PolicyError::Trap(first_line(&text))
            }
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect()
}

/// The version of the policy interface a component exports, the newest when
/// it exports several this host loads. A component exporting only another
/// version is refused, naming the version it exports and those this host
/// loads.
fn check_version(engine: &Engine, component: &Component) -> Result<WitVersion, PolicyError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    if let Some(v) = WitVersion::ALL
        .into_iter()
        .rev()
        .find(|v| exports.iter().any(|n| n == v.export()))
    {
        return Ok(v);
    }
    let speaks = WitVersion::ALL.map(WitVersion::export).join(" or ");
    if let Some(other) = exports.iter().find(|n| n.starts_with(EXPORT_PREFIX)) {
        return Err(PolicyError::Version(format!(
            "the component exports {other}, this host loads {speaks}"
        )));
    }
    Err(PolicyError::WrongWorld(format!(
        "the component does not export {speaks} (it exports: {})",
        if exports.is_empty() {
            "nothing".to_string()
        } else {
            exports.join(", ")
        }
    )))
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
