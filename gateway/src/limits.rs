//! The gateway's share of the rate limits (`platform::ratelimit`): chat tokens per minute, and
//! streams open at once. Requests per minute are counted when the key is authenticated, for
//! every route.
//!
//! The stream cap counts in this process only: it keeps one tenant from holding a gateway's
//! connections and memory, and a gateway has no need to ask the others for that. Behind a load
//! balancer, a tenant can hold the cap in each process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use platform::auth::KeyPrincipal;
use platform::ApiError;
use uuid::Uuid;

/// Streams open now, by organization and by key (keys with a cap of their own only).
#[derive(Default)]
pub struct Streams {
    open: Mutex<HashMap<Uuid, u32>>,
}

/// An open stream; dropping it closes it.
pub struct StreamSlot {
    streams: Arc<Streams>,
    held: Vec<Uuid>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().unwrap_or_else(|p| p.into_inner());
        for id in &self.held {
            if let Some(count) = open.get_mut(id) {
                *count -= 1;
                if *count == 0 {
                    open.remove(id);
                }
            }
        }
    }
}

impl Streams {
    /// Opens a stream for `key`, or 429 `too_many_streams` when its organization (or the key,
    /// where an admin capped it) already has as many open here as it may.
    pub fn open(self: &Arc<Self>, key: &KeyPrincipal) -> Result<StreamSlot, ApiError> {
        let mut caps = vec![(
            key.org_id,
            key.limits.org.concurrent_streams,
            "organization",
        )];
        if let Some(own) = key.limits.key {
            if own.concurrent_streams < key.limits.org.concurrent_streams {
                caps.push((key.key_id, own.concurrent_streams, "API key"));
            }
        }
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        for (id, cap, whose) in &caps {
            if open.get(id).copied().unwrap_or(0) >= *cap {
                platform::metrics::RATE_LIMITED
                    .with_label_values(&["streams"])
                    .inc();
                return Err(ApiError::too_many_requests(
                    "too_many_streams",
                    format!(
                        "This {whose} already has {cap} streams open, its limit: wait for one to end, or ask without \"stream\"."
                    ),
                    1,
                ));
            }
        }
        for (id, _, _) in &caps {
            *open.entry(*id).or_insert(0) += 1;
        }
        Ok(StreamSlot {
            streams: self.clone(),
            held: caps.into_iter().map(|(id, _, _)| id).collect(),
        })
    }

    /// Streams open now for `id` (an organization or a key).
    pub fn open_for(&self, id: Uuid) -> u32 {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&id).copied().unwrap_or(0)
    }
}

/// The tokens a call may use at most, as counted against tokens per minute at admission: the
/// prompt's upper bound and the completion budget asked for (or the default one).
pub fn tokens_wanted(prompt_bound: i64, wanted_completion: Option<i64>) -> u64 {
    let completion = wanted_completion.unwrap_or(crate::quota::DEFAULT_COMPLETION_BUDGET);
    u64::try_from(prompt_bound.saturating_add(completion)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::plans::PlanId;
    use platform::ratelimit::{KeyLimits, Limits, Overrides};

    fn key(org_cap: u32, key_cap: Option<u32>) -> KeyPrincipal {
        let org = Limits {
            requests_per_minute: 60,
            tokens_per_minute: 1000,
            concurrent_streams: org_cap,
        };
        KeyPrincipal {
            key_id: Uuid::now_v7(),
            org_id: Uuid::now_v7(),
            owner_user_id: None,
            team_id: None,
            permissions: Default::default(),
            team_permissions: Default::default(),
            plan: PlanId::Free,
            limits: KeyLimits::new(
                org,
                Overrides {
                    concurrent_streams: key_cap,
                    ..Default::default()
                },
            ),
            sso: None,
        }
    }

    #[test]
    fn the_cap_counts_open_streams_and_frees_a_slot_when_one_ends() {
        let streams = Arc::new(Streams::default());
        let key = key(2, None);
        let first = streams.open(&key).unwrap();
        let _second = streams.open(&key).unwrap();
        let refused = streams.open(&key).err().unwrap();
        assert_eq!(refused.status.as_u16(), 429);
        assert_eq!(refused.code, "too_many_streams");
        drop(first);
        assert_eq!(streams.open_for(key.org_id), 1);
        assert!(streams.open(&key).is_ok());
    }

    #[test]
    fn a_key_cap_binds_the_key_and_counts_for_its_organization() {
        let streams = Arc::new(Streams::default());
        let capped = key(3, Some(1));
        let _one = streams.open(&capped).unwrap();
        assert!(streams.open(&capped).is_err(), "the key's own cap");
        let mut other = key(3, None);
        other.org_id = capped.org_id;
        let _two = streams.open(&other).unwrap();
        let _three = streams.open(&other).unwrap();
        assert!(streams.open(&other).is_err(), "the organization's cap");
    }

    #[test]
    fn tokens_wanted_are_the_prompt_and_the_budget() {
        assert_eq!(tokens_wanted(10, Some(20)), 30);
        assert_eq!(
            tokens_wanted(10, None),
            10 + crate::quota::DEFAULT_COMPLETION_BUDGET as u64
        );
    }
}
