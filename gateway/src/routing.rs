//! Routing without I/O: the order in which a call tries its model's deployments, from their
//! priorities and weights, the providers configured, the circuit breakers and the time. The
//! gateway (`lib.rs`) keeps the breakers of its process and feeds this plan the clock and a
//! random source; a chat call walks the plan.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use platform::config::ProviderConfig;

use crate::catalog::Deployment;

/// One deployment's circuit breaker. Consecutive failures open it for the cool-down. After the
/// cool-down one call, the probe, tries the deployment while the others still skip it: the
/// probe's success closes the circuit, its failure opens it for another cool-down. A probe that
/// never reports (its call was served by an earlier deployment, or vanished) frees the way for
/// the next one after the probe window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    probe_until: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    /// No failure streak has opened it: calls go through.
    Closed,
    /// Opened and cooling down: the deployment is skipped.
    Open,
    /// Cooled down and not yet proven: this call is the one probe that goes through.
    HalfOpen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the circuit.
    pub failures: u32,
    pub cooldown: Duration,
    /// How long a probe holds the half-open circuit before another may go (the upstream timeout).
    pub probe: Duration,
}

impl Breaker {
    pub fn circuit(&self, now: Instant) -> Circuit {
        match self.open_until {
            None => Circuit::Closed,
            Some(until) if now < until => Circuit::Open,
            Some(_) if self.probe_until.is_some_and(|probe| now < probe) => Circuit::Open,
            Some(_) => Circuit::HalfOpen,
        }
    }

    /// Counts an attempt's outcome; true when this failure opened the circuit.
    pub fn record(&mut self, ok: bool, now: Instant, policy: BreakerPolicy) -> bool {
        if ok {
            *self = Self::default();
            return false;
        }
        if self.open_until.is_some_and(|until| now >= until) {
            // The probe failed: another cool-down.
            *self = Self {
                failures: 0,
                open_until: Some(now + policy.cooldown),
                probe_until: None,
            };
            return true;
        }
        self.failures += 1;
        if self.failures < policy.failures {
            return false;
        }
        self.failures = 0;
        self.open_until = Some(now + policy.cooldown);
        true
    }

    /// A call takes the half-open circuit's one probe.
    fn take_probe(&mut self, now: Instant, policy: BreakerPolicy) {
        self.probe_until = Some(now + policy.probe);
    }
}

/// The breakers are per deployment: a provider and its upstream model.
pub fn breaker_key(deployment: &Deployment) -> String {
    format!("{}/{}", deployment.provider, deployment.upstream_model)
}

/// One step of a call's plan: a deployment, its provider, and its circuit when planned.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    pub deployment: &'a Deployment,
    pub provider: &'a ProviderConfig,
    pub circuit: Circuit,
}

impl Step<'_> {
    /// An open circuit: recorded as a `circuit_open` attempt, not called.
    pub fn skipped(&self) -> bool {
        self.circuit == Circuit::Open
    }
}

/// The deployments in the order to try them: by priority, weighted random inside a priority,
/// leaving out those whose provider is not configured. Open circuits keep their place (the call
/// records them as skipped); a half-open one is this call's probe, and open for the others.
/// `pick(total)` draws a number below `total`.
pub fn plan<'a>(
    deployments: &'a [Deployment],
    providers: &'a [ProviderConfig],
    breakers: &mut HashMap<String, Breaker>,
    now: Instant,
    policy: BreakerPolicy,
    pick: &mut dyn FnMut(u64) -> u64,
) -> Vec<Step<'a>> {
    let available: Vec<Step<'a>> = deployments
        .iter()
        .filter_map(|deployment| {
            let provider = providers.iter().find(|p| p.name == deployment.provider)?;
            let circuit = match breakers.get_mut(&breaker_key(deployment)) {
                None => Circuit::Closed,
                Some(breaker) => {
                    let circuit = breaker.circuit(now);
                    if circuit == Circuit::HalfOpen {
                        breaker.take_probe(now, policy);
                    }
                    circuit
                }
            };
            Some(Step {
                deployment,
                provider,
                circuit,
            })
        })
        .collect();
    let priorities: BTreeSet<u32> = available.iter().map(|s| s.deployment.priority).collect();
    let mut ordered = Vec::with_capacity(available.len());
    for priority in priorities {
        let mut group: Vec<Step<'a>> = available
            .iter()
            .copied()
            .filter(|s| s.deployment.priority == priority)
            .collect();
        while !group.is_empty() {
            let index = weighted(&group, pick);
            ordered.push(group.remove(index));
        }
    }
    ordered
}

/// The index a draw lands on when each step owns as many numbers as its weight (at least one).
fn weighted(group: &[Step<'_>], pick: &mut dyn FnMut(u64) -> u64) -> usize {
    let weight = |s: &Step<'_>| u64::from(s.deployment.weight.max(1));
    let total: u64 = group.iter().map(weight).sum();
    let mut drawn = pick(total) % total.max(1);
    group
        .iter()
        .position(|s| {
            if drawn < weight(s) {
                return true;
            }
            drawn -= weight(s);
            false
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: BreakerPolicy = BreakerPolicy {
        failures: 3,
        cooldown: Duration::from_secs(30),
        probe: Duration::from_secs(5),
    };

    fn deployment(provider: &str, model: &str, priority: u32, weight: u32) -> Deployment {
        Deployment {
            provider: provider.into(),
            upstream_model: model.into(),
            priority,
            weight,
        }
    }

    fn providers(names: &[&str]) -> Vec<ProviderConfig> {
        names
            .iter()
            .map(|name| ProviderConfig {
                name: (*name).into(),
                base_url: format!("http://{name}"),
                api_key: "k".into(),
            })
            .collect()
    }

    fn order(steps: &[Step<'_>]) -> Vec<String> {
        steps.iter().map(|s| breaker_key(s.deployment)).collect()
    }

    /// A draw that always lands on the first number.
    fn first(_: u64) -> u64 {
        0
    }

    #[test]
    fn lower_priorities_go_first_whatever_the_weights() {
        let deployments = [
            deployment("openrouter", "b", 1, 100),
            deployment("gemini", "a", 0, 1),
            deployment("openai", "c", 2, 1),
        ];
        let providers = providers(&["openrouter", "gemini", "openai"]);
        let mut last = |total: u64| total - 1;
        for pick in [&mut first as &mut dyn FnMut(u64) -> u64, &mut last] {
            let steps = plan(
                &deployments,
                &providers,
                &mut HashMap::new(),
                Instant::now(),
                POLICY,
                pick,
            );
            assert_eq!(order(&steps), ["gemini/a", "openrouter/b", "openai/c"]);
        }
    }

    #[test]
    fn inside_a_priority_each_deployment_leads_as_often_as_its_weight() {
        let deployments = [
            deployment("openrouter", "heavy", 0, 3),
            deployment("openai", "light", 0, 1),
            deployment("gemini", "unweighted", 0, 0),
        ];
        let providers = providers(&["openrouter", "openai", "gemini"]);
        let mut leaders: HashMap<String, u32> = HashMap::new();
        // Weight 0 counts as 1, so the first draw is over 5 numbers; try each once.
        for n in 0..5 {
            let mut draws = vec![n].into_iter();
            let mut pick = |_: u64| draws.next().unwrap_or(0);
            let steps = plan(
                &deployments,
                &providers,
                &mut HashMap::new(),
                Instant::now(),
                POLICY,
                &mut pick,
            );
            assert_eq!(steps.len(), 3, "every deployment is in the plan once");
            *leaders.entry(breaker_key(steps[0].deployment)).or_default() += 1;
        }
        assert_eq!(leaders["openrouter/heavy"], 3);
        assert_eq!(leaders["openai/light"], 1);
        assert_eq!(leaders["gemini/unweighted"], 1);
    }

    #[test]
    fn deployments_of_unconfigured_providers_are_left_out() {
        let deployments = [
            deployment("gemini", "g", 0, 1),
            deployment("openrouter", "o", 1, 1),
        ];
        let configured = providers(&["openrouter"]);
        let steps = plan(
            &deployments,
            &configured,
            &mut HashMap::new(),
            Instant::now(),
            POLICY,
            &mut first,
        );
        assert_eq!(order(&steps), ["openrouter/o"]);
        assert_eq!(steps[0].provider.name, "openrouter");
        assert!(plan(
            &deployments,
            &[],
            &mut HashMap::new(),
            Instant::now(),
            POLICY,
            &mut first
        )
        .is_empty());
    }

    #[test]
    fn an_open_circuit_keeps_its_place_but_is_skipped_until_the_cool_down_ends() {
        let deployments = [
            deployment("gemini", "g", 0, 1),
            deployment("openrouter", "o", 1, 1),
        ];
        let providers = providers(&["gemini", "openrouter"]);
        let start = Instant::now();
        let mut breaker = Breaker::default();
        for _ in 0..3 {
            breaker.record(false, start, POLICY);
        }
        let mut breakers = HashMap::from([("gemini/g".to_string(), breaker)]);

        let steps = plan(
            &deployments,
            &providers,
            &mut breakers,
            start,
            POLICY,
            &mut first,
        );
        assert_eq!(order(&steps), ["gemini/g", "openrouter/o"]);
        assert_eq!(
            steps.iter().map(Step::skipped).collect::<Vec<_>>(),
            [true, false]
        );

        let later = start + POLICY.cooldown;
        let steps = plan(
            &deployments,
            &providers,
            &mut breakers,
            later,
            POLICY,
            &mut first,
        );
        assert_eq!(steps[0].circuit, Circuit::HalfOpen);
        assert!(!steps[0].skipped());
    }

    #[test]
    fn after_the_cool_down_one_call_probes_while_the_others_still_skip() {
        let deployments = [deployment("gemini", "g", 0, 1)];
        let providers = providers(&["gemini"]);
        let start = Instant::now();
        let mut breaker = Breaker::default();
        for _ in 0..3 {
            breaker.record(false, start, POLICY);
        }
        let mut breakers = HashMap::from([("gemini/g".to_string(), breaker)]);
        let later = start + POLICY.cooldown;
        let circuits = |breakers: &mut HashMap<String, Breaker>, at| {
            (0..3)
                .map(|_| {
                    plan(&deployments, &providers, breakers, at, POLICY, &mut first)[0].circuit
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            circuits(&mut breakers, later),
            [Circuit::HalfOpen, Circuit::Open, Circuit::Open],
            "one probe, the waiting calls still skip"
        );
        // A probe that never reports frees the way after the probe window.
        assert_eq!(
            circuits(&mut breakers, later + POLICY.probe)[0],
            Circuit::HalfOpen
        );
        // The probe's success closes the circuit for everyone.
        let probe = later + POLICY.probe;
        breakers
            .get_mut("gemini/g")
            .map(|b| b.record(true, probe, POLICY));
        assert_eq!(circuits(&mut breakers, probe), [Circuit::Closed; 3]);
    }

    #[test]
    fn consecutive_failures_open_the_circuit_and_a_success_resets_the_count() {
        let now = Instant::now();
        let mut breaker = Breaker::default();
        assert!(!breaker.record(false, now, POLICY));
        assert!(!breaker.record(false, now, POLICY));
        assert!(!breaker.record(true, now, POLICY), "a success in between");
        assert!(!breaker.record(false, now, POLICY));
        assert!(!breaker.record(false, now, POLICY));
        assert_eq!(breaker.circuit(now), Circuit::Closed);
        assert!(
            breaker.record(false, now, POLICY),
            "the third in a row opens it"
        );
        assert_eq!(breaker.circuit(now), Circuit::Open);
        assert_eq!(
            breaker.circuit(now + POLICY.cooldown - Duration::from_millis(1)),
            Circuit::Open
        );
        assert_eq!(breaker.circuit(now + POLICY.cooldown), Circuit::HalfOpen);
    }

    #[test]
    fn a_failed_probe_reopens_the_circuit_at_once_and_a_successful_one_closes_it() {
        let start = Instant::now();
        let mut breaker = Breaker::default();
        for _ in 0..3 {
            breaker.record(false, start, POLICY);
        }
        let later = start + POLICY.cooldown;
        let mut failing = breaker;
        assert!(
            failing.record(false, later, POLICY),
            "the failed probe reopens it"
        );
        assert_eq!(failing.circuit(later), Circuit::Open);
        assert_eq!(
            failing.circuit(later + POLICY.cooldown - Duration::from_millis(1)),
            Circuit::Open
        );
        assert_eq!(failing.circuit(later + POLICY.cooldown), Circuit::HalfOpen);

        breaker.record(true, later, POLICY);
        assert_eq!(breaker, Breaker::default());
        assert_eq!(breaker.circuit(later), Circuit::Closed);
    }
}
