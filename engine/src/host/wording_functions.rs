//! Words for people in workflow messages: `human_bytes(n)` ("41.3 GiB")
//! and `plural(n, "shard")` ("1 shard", "3 shards"), the same wording the
//! engine's own lines use (`runbook_steps::runtime::wording`).

use rhai::Engine;
use runbook_steps::runtime::wording;

/// Registers `human_bytes` and `plural`.
pub fn register(engine: &mut Engine) {
    engine.register_fn("human_bytes", |bytes: i64| {
        wording::human_bytes(bytes.max(0) as u64)
    });
    engine.register_fn("plural", |n: i64, noun: &str| {
        if n < 0 {
            format!("{n} {}", wording::plural(noun))
        } else {
            wording::count(n as u64, noun)
        }
    });
}
