//! Rate limits: token buckets (GCRA, from `governor`) per API key and per user, and for public
//! (widget) keys per visitor and per page origin, so one busy page or one scripted visitor cannot
//! starve everyone else using the same key.
//!
//! A request passes only if every bucket that applies to it has room. `governor` has no way to
//! test a bucket without taking from it, nor to give a cell back, so a request refused by a later
//! bucket has already taken a cell from the earlier ones. The buckets are therefore checked from
//! the most specific to the broadest (visitor or user, then origin, then key): a request refused
//! by its own visitor or user bucket never takes from the buckets it shares with others, and one
//! refused by a shared bucket costs only its own caller a cell, which is fair since that caller
//! did ask.
//!
//! Several replicas behind a load balancer share their buckets through the application
//! database ([`RateLimiter::shared`]): the same GCRA, one row per bucket holding its
//! theoretical arrival time, taken by one atomic upsert, so a caller gets the configured rate
//! in total and not once per replica.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter as Gcra};
use lore_db::{Database, Db, Dialect, Migration, Schema, params};

use crate::config::{RateLimit, RateLimitConfig};

/// One limit's buckets in this process, one per key (key id, user, visitor or origin).
type Local = Gcra<String, HashMapStateStore<String>, DefaultClock>;

/// One limit's buckets.
enum Buckets {
    Local(Local),
    Shared { db: Arc<Db>, interval_us: i64, tolerance_us: i64 },
}

/// Every configured limit; a limit of 0 per minute is `None` (off).
pub struct RateLimiter {
    per_key: Option<Buckets>,
    per_user: Option<Buckets>,
    per_visitor: Option<Buckets>,
    per_origin: Option<Buckets>,
}

const SCHEMA: Schema = Schema {
    name: "rate_limits",
    migrations: &[Migration {
        version: 1,
        sqlite: "CREATE TABLE rate_buckets (bucket TEXT PRIMARY KEY, tat_us INTEGER NOT NULL);",
        postgres: "CREATE TABLE rate_buckets (bucket TEXT PRIMARY KEY, tat_us BIGINT NOT NULL);",
    }],
};

/// Who is asking, as far as rate limits care.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The API key (or the public key behind a visitor token).
    pub key_id: Option<&'a str>,
    /// The user; for a public key or visitor token, the visitor's id.
    pub user: &'a str,
    /// A public key or a visitor token minted from one.
    pub public: bool,
    /// The page's `Origin`, sent by browsers with a widget's requests.
    pub origin: Option<&'a str>,
}

/// A request refused by a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Which limit: `key`, `user`, `visitor` or `origin`.
    pub limit: &'static str,
    /// How long until that bucket has room again (exact; see [`Limited::retry_after_secs`]).
    pub retry_after: Duration,
}

impl Limited {
    /// The `Retry-After` header value: whole seconds, rounded up so a client that waits exactly
    /// that long finds room, and at least 1 (a `Retry-After: 0` invites an immediate retry loop).
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        secs.max(1)
    }
}

impl RateLimiter {
    /// Buckets for `config`. A `per_minute` of 0 turns that limit off; a `burst` of 0 is taken
    /// as 1 (a bucket must hold at least one request).
    pub fn new(config: &RateLimitConfig) -> Self {
        RateLimiter {
            per_key: local(config.per_key),
            per_user: local(config.per_user),
            per_visitor: local(config.per_visitor),
            per_origin: local(config.per_origin),
        }
    }

    /// The same limits with their buckets in `database`, shared by every process using it
    /// (replicas on one PostgreSQL). A bucket costs one upsert per request.
    pub fn shared(config: &RateLimitConfig, database: &Database) -> crate::Result<Self> {
        let db = Arc::new(database.store(&SCHEMA)?);
        let shared = |limit: RateLimit| {
            let per_minute = i64::from(NonZeroU32::new(limit.per_minute)?.get());
            let burst = i64::from(limit.burst.max(1));
            let interval_us = 60_000_000 / per_minute;
            Some(Buckets::Shared { db: db.clone(), interval_us, tolerance_us: (burst - 1) * interval_us })
        };
        Ok(RateLimiter {
            per_key: shared(config.per_key),
            per_user: shared(config.per_user),
            per_visitor: shared(config.per_visitor),
            per_origin: shared(config.per_origin),
        })
    }

    /// Checks every bucket that applies: per visitor (public subjects, keyed by the visitor id
    /// in `user`) or per user (everyone else), then per origin (public subjects that sent one),
    /// then per key (when there is a key). The first bucket without room refuses the request;
    /// see the module doc for why that order.
    pub fn check(&self, subject: &Subject) -> Result<(), Limited> {
        let (personal, personal_limit) =
            if subject.public { (&self.per_visitor, "visitor") } else { (&self.per_user, "user") };
        take(personal.as_ref(), personal_limit, subject.user)?;
        if subject.public {
            // Calls without an `Origin` (scripts, not pages) share one bucket: a public key
            // used directly gets a new anonymous user each time, so its visitor bucket alone
            // would never fill.
            take(self.per_origin.as_ref(), "origin", subject.origin.unwrap_or(NO_ORIGIN))?;
        }
        if let Some(key_id) = subject.key_id {
            take(self.per_key.as_ref(), "key", key_id)?;
        }
        Ok(())
    }

    /// Forgets keys whose buckets are full again (indistinguishable from a fresh bucket), so
    /// the maps do not grow with every visitor ever seen. Call every few minutes.
    pub fn retain_recent(&self) {
        for buckets in [&self.per_key, &self.per_user, &self.per_visitor, &self.per_origin].into_iter().flatten() {
            match buckets {
                Buckets::Local(local) => {
                    local.retain_recent();
                    local.shrink_to_fit();
                }
                Buckets::Shared { db, .. } => {
                    // A bucket whose arrival time has passed is full again.
                    if let Err(error) =
                        db.execute("DELETE FROM rate_buckets WHERE tat_us < CAST(?1 AS BIGINT)", params![now_us()])
                    {
                        tracing::warn!(%error, "rate limits: cannot forget idle buckets");
                    }
                    // One statement clears every limit's rows.
                    break;
                }
            }
        }
    }
}

fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// GCRA on a database row: a request at `now` finds the bucket's theoretical arrival time
/// `tat` (`now` when it has none), passes if `max(tat, now) − now ≤ tolerance` and then moves
/// it to `max(tat, now) + interval`. The upsert only writes when the request passes, so a
/// refused request takes nothing. A database error lets the request through (and is logged):
/// rate limits protect capacity, and an unavailable database fails the request anyway.
fn take_shared(db: &Db, limit: &'static str, key: &str, interval_us: i64, tolerance_us: i64) -> Result<(), Limited> {
    let bucket = format!("{limit}\u{1f}{key}");
    let now = now_us();
    let greatest = match db.dialect() {
        Dialect::Sqlite => "max",
        Dialect::Postgres => "GREATEST",
    };
    let sql = format!(
        "INSERT INTO rate_buckets (bucket, tat_us) VALUES (?1, CAST(?2 AS BIGINT) + CAST(?3 AS BIGINT))
         ON CONFLICT (bucket) DO UPDATE SET tat_us = {greatest}(rate_buckets.tat_us, CAST(?2 AS BIGINT)) + CAST(?3 AS BIGINT)
         WHERE {greatest}(rate_buckets.tat_us, CAST(?2 AS BIGINT)) - CAST(?2 AS BIGINT) <= CAST(?4 AS BIGINT)
         RETURNING tat_us"
    );
    let taken = db.query_opt(&sql, params![&bucket, now, interval_us, tolerance_us]).and_then(|row| match row {
        Some(_) => Ok(None),
        None => db
            .query_opt("SELECT tat_us FROM rate_buckets WHERE bucket = ?1", params![&bucket])?
            .map(|row| row.get::<i64>(0))
            .transpose(),
    });
    match taken {
        Ok(None) => Ok(()),
        Ok(Some(tat)) => {
            let wait = (tat.max(now) - now - tolerance_us).max(1);
            Err(Limited { limit, retry_after: Duration::from_micros(wait as u64) })
        }
        Err(error) => {
            tracing::error!(%error, limit, "rate limits: the shared bucket cannot be read; request let through");
            Ok(())
        }
    }
}

/// The origin bucket of public-key calls that name no origin.
const NO_ORIGIN: &str = "(no origin)";

fn local(limit: RateLimit) -> Option<Buckets> {
    let per_minute = NonZeroU32::new(limit.per_minute)?;
    let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
    Some(Buckets::Local(Gcra::hashmap(Quota::per_minute(per_minute).allow_burst(burst))))
}

/// Takes one cell from `key`'s bucket of a limit, if that limit is on.
fn take(buckets: Option<&Buckets>, limit: &'static str, key: &str) -> Result<(), Limited> {
    match buckets {
        None => Ok(()),
        Some(Buckets::Local(local)) => local
            .check_key(&key.to_owned())
            .map_err(|not_until| Limited { limit, retry_after: not_until.wait_time_from(local.clock().now()) }),
        Some(Buckets::Shared { db, interval_us, tolerance_us }) => {
            take_shared(db, limit, key, *interval_us, *tolerance_us)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFF: RateLimit = RateLimit { per_minute: 0, burst: 0 };

    fn limiter(per_key: RateLimit, per_user: RateLimit, per_visitor: RateLimit, per_origin: RateLimit) -> RateLimiter {
        RateLimiter::new(&RateLimitConfig { per_key, per_user, per_visitor, per_origin })
    }

    fn user(user: &str) -> Subject<'_> {
        Subject { key_id: None, user, public: false, origin: None }
    }

    fn visitor<'a>(visitor: &'a str, origin: &'a str) -> Subject<'a> {
        Subject { key_id: Some("widget-key"), user: visitor, public: true, origin: Some(origin) }
    }

    /// Two replicas (two limiters on one database) share each bucket: the burst passes once
    /// in total, a refused request takes nothing, and idle buckets are forgotten.
    #[test]
    fn replicas_share_buckets_through_the_database() {
        lore_db::testing::on_both("replicas_share_buckets_through_the_database", |database| {
            let config = RateLimitConfig {
                per_key: RateLimit { per_minute: 600, burst: 5 },
                per_user: RateLimit { per_minute: 6, burst: 3 },
                per_visitor: OFF,
                per_origin: OFF,
            };
            let replicas =
                [RateLimiter::shared(&config, database).unwrap(), RateLimiter::shared(&config, database).unwrap()];
            let ana = Subject { key_id: Some("k1"), user: "ana", public: false, origin: None };
            for n in 0..3 {
                assert_eq!(replicas[n % 2].check(&ana), Ok(()), "request {n} of the burst");
            }
            for n in 0..4 {
                let limited = replicas[n % 2].check(&ana).expect_err("over the shared burst");
                assert_eq!(limited.limit, "user");
                assert!(limited.retry_after > Duration::from_secs(9), "{:?}", limited.retry_after);
                assert!(limited.retry_after <= Duration::from_secs(10), "{:?}", limited.retry_after);
            }
            // The user bucket refused before the key bucket was touched: Bob still has the
            // key's burst of 5 minus Ana's 3.
            let bob = Subject { key_id: Some("k1"), user: "bob", public: false, origin: None };
            assert_eq!(replicas[0].check(&bob), Ok(()));
            assert_eq!(replicas[1].check(&bob), Ok(()));
            let carl = Subject { key_id: Some("k1"), user: "carl", public: false, origin: None };
            assert_eq!(replicas[0].check(&carl).expect_err("key bucket empty").limit, "key");
            let db = database.store(&SCHEMA).unwrap();
            let rows = |db: &Db| db.query("SELECT bucket FROM rate_buckets", params![]).unwrap().len();
            assert_eq!(rows(&db), 4, "ana, bob, carl and the key");
            db.execute("UPDATE rate_buckets SET tat_us = 0 WHERE bucket <> ?1", params!["user\u{1f}ana"]).unwrap();
            replicas[1].retain_recent();
            assert_eq!(rows(&db), 1, "only ana's bucket is still filling");
        });
    }

    #[test]
    fn a_burst_passes_then_the_next_request_waits_one_replenish_interval() {
        // 6 a minute: one request every 10 s once the burst of 3 is spent.
        let limits = limiter(OFF, RateLimit { per_minute: 6, burst: 3 }, OFF, OFF);
        for n in 0..3 {
            assert_eq!(limits.check(&user("ana")), Ok(()), "request {n} of the burst");
        }
        let limited = limits.check(&user("ana")).expect_err("the fourth request is over the burst");
        assert_eq!(limited.limit, "user");
        assert!(
            limited.retry_after > Duration::from_secs(9) && limited.retry_after <= Duration::from_secs(10),
            "retry after {:?}",
            limited.retry_after
        );
        assert_eq!(limited.retry_after_secs(), 10);
    }

    #[test]
    fn retry_after_secs_rounds_up_to_at_least_one_second() {
        let at = |retry_after| Limited { limit: "key", retry_after }.retry_after_secs();
        assert_eq!(at(Duration::ZERO), 1);
        assert_eq!(at(Duration::from_millis(1)), 1);
        assert_eq!(at(Duration::from_secs(2)), 2);
        assert_eq!(at(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn keys_and_users_have_their_own_buckets() {
        let limits = limiter(RateLimit { per_minute: 1, burst: 1 }, RateLimit { per_minute: 1, burst: 1 }, OFF, OFF);
        let with_key = |key, user| Subject { key_id: Some(key), user, public: false, origin: None };
        assert_eq!(limits.check(&with_key("k1", "ana")), Ok(()));
        assert_eq!(limits.check(&with_key("k1", "ana")).map_err(|l| l.limit), Err("user"));
        assert_eq!(limits.check(&with_key("k1", "ben")).map_err(|l| l.limit), Err("key"));
        assert_eq!(limits.check(&with_key("k2", "cat")), Ok(()));
    }

    #[test]
    fn a_per_minute_of_zero_turns_a_limit_off_and_a_burst_of_zero_is_one() {
        let limits = limiter(OFF, RateLimit { per_minute: 0, burst: 1 }, OFF, OFF);
        for _ in 0..1000 {
            assert_eq!(limits.check(&user("ana")), Ok(()));
        }
        let limits = limiter(OFF, RateLimit { per_minute: 1, burst: 0 }, OFF, OFF);
        assert_eq!(limits.check(&user("ana")), Ok(()));
        assert_eq!(limits.check(&user("ana")).map_err(|l| l.limit), Err("user"));
    }

    #[test]
    fn public_subjects_are_limited_per_visitor_and_per_origin_not_per_user() {
        let one = RateLimit { per_minute: 1, burst: 1 };
        let limits = limiter(OFF, one, RateLimit { per_minute: 1, burst: 2 }, RateLimit { per_minute: 1, burst: 3 });
        // Each visitor gets two; the page's origin three between all its visitors.
        assert_eq!(limits.check(&visitor("v1", "https://a.example")), Ok(()));
        assert_eq!(limits.check(&visitor("v1", "https://a.example")), Ok(()));
        assert_eq!(limits.check(&visitor("v1", "https://a.example")).map_err(|l| l.limit), Err("visitor"));
        assert_eq!(limits.check(&visitor("v2", "https://a.example")), Ok(()));
        assert_eq!(limits.check(&visitor("v3", "https://a.example")).map_err(|l| l.limit), Err("origin"));
        assert_eq!(limits.check(&visitor("v3", "https://b.example")), Ok(()));
        // Calls without an origin (not from a browser) are limited per visitor, and share
        // one origin bucket: a public key used directly has a new visitor each time.
        let no_origin = |visitor_id| Subject { origin: None, ..visitor(visitor_id, "") };
        assert_eq!(limits.check(&no_origin("v4")), Ok(()));
        assert_eq!(limits.check(&no_origin("v4")), Ok(()));
        assert_eq!(limits.check(&no_origin("v4")).map_err(|l| l.limit), Err("visitor"));
        assert_eq!(limits.check(&no_origin("anonymous:1")), Ok(()));
        assert_eq!(limits.check(&no_origin("anonymous:2")).map_err(|l| l.limit), Err("origin"));
        // The per-user limit (1) never applied to visitors; it does to a signed-in user.
        assert_eq!(limits.check(&user("v1")), Ok(()));
        assert_eq!(limits.check(&user("v1")).map_err(|l| l.limit), Err("user"));
    }

    #[test]
    fn a_request_refused_by_its_own_bucket_takes_nothing_from_the_shared_ones() {
        let limits = limiter(RateLimit { per_minute: 1, burst: 2 }, OFF, RateLimit { per_minute: 1, burst: 1 }, OFF);
        assert_eq!(limits.check(&visitor("v1", "https://a.example")), Ok(()));
        for _ in 0..10 {
            assert_eq!(limits.check(&visitor("v1", "https://a.example")).map_err(|l| l.limit), Err("visitor"));
        }
        // The key's second cell is still there for another visitor.
        assert_eq!(limits.check(&visitor("v2", "https://a.example")), Ok(()));
        assert_eq!(limits.check(&visitor("v3", "https://a.example")).map_err(|l| l.limit), Err("key"));
    }

    #[test]
    fn retain_recent_forgets_buckets_that_are_full_again() {
        // 60 000 a minute: a bucket of one refills in a millisecond.
        let limits = limiter(OFF, RateLimit { per_minute: 60_000, burst: 1 }, OFF, OFF);
        let tracked = |limits: &RateLimiter| match &limits.per_user {
            Some(Buckets::Local(local)) => local.len(),
            _ => 0,
        };
        limits.check(&user("ana")).expect("first request");
        limits.check(&user("ben")).expect("first request");
        assert_eq!(tracked(&limits), 2);
        std::thread::sleep(Duration::from_millis(20));
        limits.retain_recent();
        assert_eq!(tracked(&limits), 0);
    }
}
