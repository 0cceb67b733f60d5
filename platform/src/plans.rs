//! The plans of PRODUCT.md as data. Prices are cents per month; `None` is custom (Enterprise,
//! priced by contract) or unlimited tokens.

use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// The plans of PRODUCT.md, by the id written in events and on the wire.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PlanId {
    Free,
    Developer,
    Pro,
    Enterprise,
}

impl PlanId {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanId::Free => "free",
            PlanId::Developer => "developer",
            PlanId::Pro => "pro",
            PlanId::Enterprise => "enterprise",
        }
    }

    /// The plan's terms.
    pub fn plan(self) -> &'static Plan {
        match self {
            PlanId::Free => &PLANS[0],
            PlanId::Developer => &PLANS[1],
            PlanId::Pro => &PLANS[2],
            PlanId::Enterprise => &PLANS[3],
        }
    }
}

impl std::str::FromStr for PlanId {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        PLANS
            .iter()
            .find(|p| p.id.as_str() == raw)
            .map(|p| p.id)
            .ok_or_else(|| {
                format!("{raw:?} is not a plan: use free, developer, pro or enterprise.")
            })
    }
}

impl From<PlanId> for String {
    fn from(id: PlanId) -> Self {
        id.as_str().to_string()
    }
}

impl std::fmt::Display for PlanId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How capable (and costly) a model is; a plan serves models up to its tier.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ModelTier {
    Basic,
    Advanced,
    Premium,
}

impl ModelTier {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelTier::Basic => "basic",
            ModelTier::Advanced => "advanced",
            ModelTier::Premium => "premium",
        }
    }
}

impl std::str::FromStr for ModelTier {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        match raw {
            "basic" => Ok(ModelTier::Basic),
            "advanced" => Ok(ModelTier::Advanced),
            "premium" => Ok(ModelTier::Premium),
            _ => Err(format!(
                "{raw:?} is not a model tier: use basic, advanced or premium."
            )),
        }
    }
}

impl std::fmt::Display for ModelTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub id: PlanId,
    pub name: &'static str,
    pub price_cents: Option<i64>,
    pub tokens_per_month: Option<u64>,
    /// The most expensive model tier the plan serves: `basic` < `advanced` < `premium`.
    pub model_tier: ModelTier,
    pub features: &'static [&'static str],
    /// Order of the plans: upgrades go up, downgrades down.
    pub rank: u8,
    /// Default rate limits of an organization (and of each of its keys) on this plan: API
    /// requests and chat tokens per minute, and streams open at once in one gateway process.
    /// The platform admin may override them per organization, an admin per key.
    pub requests_per_minute: u64,
    pub tokens_per_minute: u64,
    pub concurrent_streams: u32,
}

pub const PLANS: &[Plan] = &[
    Plan {
        id: PlanId::Free,
        name: "Free",
        price_cents: Some(0),
        tokens_per_month: Some(1_000),
        model_tier: ModelTier::Basic,
        features: &["community_support"],
        rank: 0,
        requests_per_minute: 60,
        tokens_per_minute: 10_000,
        concurrent_streams: 2,
    },
    Plan {
        id: PlanId::Developer,
        name: "Developer",
        price_cents: Some(2_900),
        tokens_per_month: Some(100_000),
        model_tier: ModelTier::Advanced,
        features: &["api_key_management", "basic_monitoring"],
        rank: 1,
        requests_per_minute: 600,
        tokens_per_minute: 100_000,
        concurrent_streams: 10,
    },
    Plan {
        id: PlanId::Pro,
        name: "Pro",
        price_cents: Some(9_900),
        tokens_per_month: Some(1_000_000),
        model_tier: ModelTier::Premium,
        features: &[
            "api_key_management",
            "team_collaboration",
            "basic_monitoring",
            "advanced_monitoring",
            "alerts",
            "priority_support",
        ],
        rank: 2,
        requests_per_minute: 3_000,
        tokens_per_minute: 500_000,
        concurrent_streams: 50,
    },
    Plan {
        id: PlanId::Enterprise,
        name: "Enterprise",
        price_cents: None,
        tokens_per_month: None,
        model_tier: ModelTier::Premium,
        features: &[
            "api_key_management",
            "team_collaboration",
            "basic_monitoring",
            "advanced_monitoring",
            "alerts",
            "enterprise_security",
            "sso",
            "dedicated_support",
            "sla",
        ],
        rank: 3,
        requests_per_minute: 10_000,
        tokens_per_minute: 2_000_000,
        concurrent_streams: 200,
    },
];

pub const DEFAULT_PLAN: PlanId = PlanId::Free;

/// The plan named `id`, if there is one.
pub fn plan(id: &str) -> Option<&'static Plan> {
    id.parse::<PlanId>().ok().map(PlanId::plan)
}

impl Plan {
    pub fn serves_tier(&self, tier: ModelTier) -> bool {
        tier <= self.model_tier
    }
}

/// The first instant of the calendar month after `at` (UTC).
pub fn next_month_start(at: DateTime<Utc>) -> DateTime<Utc> {
    let (year, month) = if at.month() == 12 {
        (at.year() + 1, 1)
    } else {
        (at.year(), at.month() + 1)
    };
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .unwrap_or(at)
}

/// 403 naming the plan when the caller's organization is on a plan without `feature`; `what`
/// says what the caller tried to use ("Teams"). The platform admin is not bound by plans.
pub fn require_feature(
    principal: &crate::Principal,
    feature: &str,
    what: &str,
) -> Result<(), crate::ApiError> {
    let crate::Principal::ApiKey(key) = principal else {
        return Ok(());
    };
    let current = key.plan.plan();
    if current.features.contains(&feature) {
        return Ok(());
    }
    let with: Vec<&str> = PLANS
        .iter()
        .filter(|p| p.features.contains(&feature))
        .map(|p| p.name)
        .collect();
    Err(crate::ApiError::forbidden(
        "plan_feature_required",
        format!(
            "{what} need the {feature} feature, which the {} plan does not include; upgrade the subscription to {} to use them.",
            current.name,
            with.join(" or ")
        ),
    ))
}

/// A calendar month (UTC), the period of quotas and invoices; written `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period {
    pub start: DateTime<Utc>,
}

impl Period {
    pub fn parse(raw: &str) -> Option<Self> {
        let (year, month) = raw.split_once('-')?;
        if year.len() != 4 || month.len() != 2 {
            return None;
        }
        let start = Utc
            .with_ymd_and_hms(year.parse().ok()?, month.parse().ok()?, 1, 0, 0, 0)
            .single()?;
        Some(Self { start })
    }

    /// The month `at` falls in.
    pub fn of(at: DateTime<Utc>) -> Self {
        let start = Utc
            .with_ymd_and_hms(at.year(), at.month(), 1, 0, 0, 0)
            .single()
            .unwrap_or(at);
        Self { start }
    }

    /// The first instant after the period.
    pub fn end(&self) -> DateTime<Utc> {
        next_month_start(self.start)
    }

    pub fn previous(&self) -> Self {
        Self::of(self.start - chrono::Duration::days(1))
    }

    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end()
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.start.format("%Y-%m"))
    }
}

/// Days in the calendar month of `at`.
pub fn days_in_month(at: DateTime<Utc>) -> u32 {
    let start = Utc
        .with_ymd_and_hms(at.year(), at.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(at);
    (next_month_start(at) - start).num_days() as u32
}

/// The price difference for the days left in the month, the day of `at` included, in cents,
/// rounded half up: `(to - from) × days_left / days_in_month`.
pub fn proration_cents(from: &Plan, to: &Plan, at: DateTime<Utc>) -> (i64, u32, u32) {
    let days = days_in_month(at);
    let left = days - at.day() + 1;
    let diff = to.price_cents.unwrap_or(0) - from.price_cents.unwrap_or(0);
    let numerator = diff * i64::from(left);
    let cents = (2 * numerator + i64::from(days)) / (2 * i64::from(days));
    (cents, left, days)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn upgrading_on_the_11th_of_a_30_day_month_charges_20_30ths() {
        let (dev, pro) = (plan("developer").expect("plan"), plan("pro").expect("plan"));
        // $70 × 20/30 = $46.666… → 4667 cents.
        assert_eq!(
            proration_cents(dev, pro, at("2026-11-11T15:00:00Z")),
            (4_667, 20, 30)
        );
        // $29 × 20/30 = $19.333… → 1933 cents.
        assert_eq!(
            proration_cents(plan("free").expect("plan"), dev, at("2026-11-11T00:00:00Z")),
            (1_933, 20, 30)
        );
        // The last day of a 31-day month: one day of 31.
        assert_eq!(
            proration_cents(dev, pro, at("2026-12-31T23:59:59Z")),
            (226, 1, 31)
        );
    }

    #[test]
    fn periods_are_calendar_months() {
        let november = Period::parse("2026-11").expect("period");
        assert_eq!(november.start, at("2026-11-01T00:00:00Z"));
        assert_eq!(november.end(), at("2026-12-01T00:00:00Z"));
        assert_eq!(november.previous().to_string(), "2026-10");
        assert_eq!(
            Period::parse("2027-01")
                .expect("period")
                .previous()
                .to_string(),
            "2026-12"
        );
        assert_eq!(Period::of(at("2026-11-30T23:59:59Z")), november);
        assert!(november.contains(at("2026-11-30T23:59:59Z")));
        assert!(!november.contains(at("2026-12-01T00:00:00Z")));
        for bad in [
            "2026-13",
            "2026-1",
            "26-11",
            "2026/11",
            "",
            "2026-00",
            "abcd-ef",
            "2026-11-01",
        ] {
            assert_eq!(Period::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn months_and_tiers() {
        assert_eq!(
            next_month_start(at("2026-12-15T10:00:00Z")),
            at("2027-01-01T00:00:00Z")
        );
        assert_eq!(days_in_month(at("2028-02-10T00:00:00Z")), 29);
        assert!(PlanId::Free.plan().serves_tier(ModelTier::Basic));
        assert!(!PlanId::Free.plan().serves_tier(ModelTier::Advanced));
        assert!(PlanId::Pro.plan().serves_tier(ModelTier::Premium));
        for p in PLANS {
            assert_eq!(p.id.as_str().parse::<PlanId>(), Ok(p.id));
            assert_eq!(p.id.plan(), p);
        }
        assert!("gold".parse::<PlanId>().is_err());
    }
}
