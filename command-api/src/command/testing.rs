//! Given/when/then for aggregates: a history of events, one command, and what it decides.
//!
//! ```ignore
//! given::<Team>(vec![created()])
//!     .when(Command::AddMember { user_id })
//!     .then(vec![EventPayload::TeamMemberAdded(TeamMemberAdded { user_id })])
//!     .then_state(|team| assert!(team.members.contains(&user_id)));
//! ```

use std::fmt::Debug;

use events::{Actor, EventEnvelope, EventPayload, StreamId};
use uuid::Uuid;

use super::Aggregate;

/// The organization every given event belongs to.
const ORG_ID: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);

/// The state `history` leaves: the events are applied in order, numbered 1, 2, … on one stream.
pub fn given<A: Aggregate>(history: Vec<EventPayload>) -> Given<A> {
    let mut stream = Stream {
        state: A::default(),
        version: 0,
    };
    stream.record(history);
    Given(stream)
}

struct Stream<A> {
    state: A,
    version: i64,
}

impl<A: Aggregate> Stream<A> {
    fn record(&mut self, payloads: Vec<EventPayload>) {
        for payload in payloads {
            self.version += 1;
            let event = EventEnvelope::new(
                payload,
                Some(ORG_ID),
                StreamId::organization(ORG_ID.into()),
                self.version,
                Actor::system(),
                "given".into(),
            );
            self.state = std::mem::take(&mut self.state).apply(&event);
        }
    }
}

pub struct Given<A>(Stream<A>);

impl<A: Aggregate> Given<A> {
    #[must_use = "assert what the command decides with then, then_error or then_state"]
    pub fn when(self, command: A::Command) -> When<A> {
        let decided = self.0.state.decide(command);
        When {
            stream: self.0,
            decided,
        }
    }
}

pub struct When<A: Aggregate> {
    stream: Stream<A>,
    decided: Result<Vec<EventPayload>, A::Error>,
}

impl<A: Aggregate> When<A>
where
    A::Error: Debug + PartialEq,
{
    /// The command decided exactly `expected` (none: it changes nothing).
    #[track_caller]
    pub fn then(self, expected: Vec<EventPayload>) -> Self {
        assert_eq!(self.decided, Ok(expected), "the decided events");
        self
    }

    /// The command was refused with `expected`.
    #[track_caller]
    pub fn then_error(self, expected: A::Error) -> Self {
        assert_eq!(self.decided, Err(expected), "the refusal");
        self
    }

    /// Checks the state the decided events leave; a refused command leaves the given state.
    pub fn then_state(self, check: impl FnOnce(&A)) {
        let mut stream = self.stream;
        if let Ok(payloads) = self.decided {
            stream.record(payloads);
        }
        check(&stream.state);
    }
}
