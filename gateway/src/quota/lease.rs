//! The arithmetic of token leases, without I/O. A gateway process holds one lease per
//! organization and month: a row of `quota_reservations` whose tokens count in the ledger's
//! `reserved`. Calls are reserved from and settled into the lease in memory; a sync with the
//! ledger (one transaction, the ledger row locked) writes the settled usage to `used` and
//! resizes the lease. The ledger invariant `used + reserved ≤ limit` holds after every sync,
//! and a process never hands out more than its lease holds.

/// The ledger row of one organization and month, as read under its lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ledger {
    pub used: i64,
    pub reserved: i64,
}

/// This process's side of a lease.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Book {
    /// Tokens the lease holds in the ledger (its row's `tokens`).
    pub held: i64,
    /// Tokens reserved by calls not yet settled.
    pub in_flight: i64,
    /// Tokens used by settled calls, not yet written to the ledger's `used`.
    pub settled: i64,
}

impl Book {
    /// Tokens the lease can still hand out.
    pub fn available(&self) -> i64 {
        self.held - self.in_flight - self.settled
    }

    /// Reserves `want` tokens, or with `partial` as many as are left if at least `min`.
    pub fn take(&mut self, min: i64, want: i64, partial: bool) -> Option<i64> {
        let available = self.available();
        let tokens = if available >= want {
            want
        } else if partial && available >= min {
            available
        } else {
            return None;
        };
        self.in_flight += tokens;
        Some(tokens)
    }

    /// Replaces a call's reservation by the tokens it used.
    pub fn settle(&mut self, reserved: i64, used: i64) {
        self.in_flight -= reserved;
        self.settled += used;
    }
}

/// How big a lease grows: a share of what is left of the allowance, at least the call that
/// asks, at most `max_block`. Near exhaustion the share falls under one call, so leases shrink
/// to per-call reservations and no process sits on tokens another one needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    pub divisor: i64,
    pub max_block: i64,
}

impl Default for Sizing {
    fn default() -> Self {
        Self {
            divisor: 16,
            max_block: 100_000,
        }
    }
}

/// What one sync asks of the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Write the settled usage and keep the lease's free tokens (as far as the limit allows).
    Flush,
    /// Grow the lease so it has `want` tokens free beyond its calls in flight; settle for `min`
    /// if that is all the allowance has left.
    Grow { min: i64, want: i64 },
}

/// The ledger and lease after a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sync {
    pub ledger: Ledger,
    /// The lease's new `held`.
    pub held: i64,
    /// The settled tokens written to `used` (subtract from `Book::settled`).
    pub flushed: i64,
    /// Tokens used or held in the ledger outside this lease: the base of the remaining estimate.
    pub others: i64,
}

/// The allowance cannot cover the call: the usage and holdings to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted {
    pub used: i64,
    pub reserved: i64,
}

/// One sync of a lease with its ledger row. `held_in_ledger` is the lease row's tokens as the
/// ledger has them: 0 when the row is absent (never taken, or released by the expiry sweep),
/// in which case the calls in flight are covered again.
pub fn sync(
    limit: i64,
    ledger: Ledger,
    held_in_ledger: i64,
    book: &Book,
    ask: Ask,
    sizing: Sizing,
) -> Result<Sync, Exhausted> {
    let used = ledger.used + book.settled;
    let held_by_others = ledger.reserved - held_in_ledger;
    // Tokens nobody uses or holds, once this lease holds exactly its calls in flight.
    let room = limit - used - held_by_others - book.in_flight;
    let free = match ask {
        Ask::Flush => (held_in_ledger - book.settled - book.in_flight).clamp(0, room.max(0)),
        Ask::Grow { min, want } => {
            if room < min {
                return Err(Exhausted {
                    used,
                    reserved: held_by_others + book.in_flight,
                });
            }
            (room / sizing.divisor.max(1))
                .clamp(want, sizing.max_block.max(want))
                .min(room)
        }
    };
    let held = book.in_flight + free;
    Ok(Sync {
        ledger: Ledger {
            used,
            reserved: held_by_others + held,
        },
        held,
        flushed: book.settled,
        others: used + held_by_others,
    })
}

/// The allowance left once this lease's calls are counted, as far as this process knows:
/// `others` is from its last sync.
pub fn remaining(limit: i64, others: i64, book: &Book) -> i64 {
    limit - others - book.in_flight - book.settled
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZING: Sizing = Sizing {
        divisor: 16,
        max_block: 10_000,
    };

    fn invariant(limit: i64, sync: &Sync) {
        assert!(
            sync.ledger.used + sync.ledger.reserved <= limit,
            "{sync:?} exceeds {limit}"
        );
    }

    #[test]
    fn a_first_lease_takes_a_sixteenth_of_what_is_left_capped_by_the_block() {
        let book = Book::default();
        let ask = Ask::Grow { min: 50, want: 50 };
        let small = sync(
            1_600,
            Ledger {
                used: 0,
                reserved: 0,
            },
            0,
            &book,
            ask,
            SIZING,
        )
        .expect("grants");
        assert_eq!((small.held, small.ledger.reserved), (100, 100));
        let big = sync(
            1_000_000,
            Ledger {
                used: 0,
                reserved: 0,
            },
            0,
            &book,
            ask,
            SIZING,
        )
        .expect("grants");
        assert_eq!(big.held, 10_000);
        invariant(1_000_000, &big);
    }

    #[test]
    fn near_exhaustion_a_lease_shrinks_to_the_one_call() {
        let ledger = Ledger {
            used: 900,
            reserved: 40,
        };
        let granted = sync(
            1_000,
            ledger,
            0,
            &Book::default(),
            Ask::Grow { min: 40, want: 40 },
            SIZING,
        )
        .expect("grants");
        assert_eq!(granted.held, 40);
        invariant(1_000, &granted);
        let ledger = granted.ledger;
        assert_eq!(
            sync(
                1_000,
                ledger,
                0,
                &Book::default(),
                Ask::Grow { min: 40, want: 40 },
                SIZING
            ),
            Err(Exhausted {
                used: 900,
                reserved: 80
            })
        );
    }

    #[test]
    fn growing_flushes_the_settled_usage_and_keeps_calls_in_flight_covered() {
        let book = Book {
            held: 100,
            in_flight: 60,
            settled: 30,
        };
        let ledger = Ledger {
            used: 500,
            reserved: 300,
        };
        let grown = sync(
            2_000,
            ledger,
            100,
            &book,
            Ask::Grow { min: 20, want: 20 },
            SIZING,
        )
        .expect("grants");
        // used 530; others hold 200; room = 2000 − 530 − 200 − 60 = 1210; 1210/16 = 75 free.
        assert_eq!(grown.ledger.used, 530);
        assert_eq!(grown.held, 60 + 75);
        assert_eq!(grown.ledger.reserved, 200 + 135);
        assert_eq!((grown.flushed, grown.others), (30, 730));
        invariant(2_000, &grown);
    }

    #[test]
    fn a_flush_keeps_the_free_tokens_and_gives_back_what_a_lowered_limit_no_longer_allows() {
        let book = Book {
            held: 400,
            in_flight: 100,
            settled: 50,
        };
        let ledger = Ledger {
            used: 0,
            reserved: 400,
        };
        let flushed = sync(10_000, ledger, 400, &book, Ask::Flush, SIZING).expect("flush");
        assert_eq!(
            (flushed.ledger, flushed.held),
            (
                Ledger {
                    used: 50,
                    reserved: 350
                },
                350
            )
        );
        // The plan now allows 300: the calls in flight stay covered, the free tokens go.
        let lowered = sync(300, ledger, 400, &book, Ask::Flush, SIZING).expect("flush");
        assert_eq!(lowered.held, 250);
        invariant(300, &lowered);
    }

    #[test]
    fn a_lease_released_by_the_sweep_covers_its_calls_in_flight_again() {
        let book = Book {
            held: 100,
            in_flight: 40,
            settled: 10,
        };
        let ledger = Ledger {
            used: 0,
            reserved: 0,
        };
        let again = sync(1_000, ledger, 0, &book, Ask::Flush, SIZING).expect("flush");
        assert_eq!(
            (again.held, again.ledger),
            (
                40,
                Ledger {
                    used: 10,
                    reserved: 40
                }
            )
        );
    }

    #[test]
    fn a_book_never_hands_out_more_than_it_holds() {
        let mut book = Book {
            held: 100,
            ..Book::default()
        };
        assert_eq!(book.take(60, 60, false), Some(60));
        assert_eq!(book.take(60, 60, false), None);
        assert_eq!(book.take(10, 60, true), Some(40));
        assert_eq!(book.available(), 0);
        book.settle(60, 25);
        assert_eq!(
            (book.in_flight, book.settled, book.available()),
            (40, 25, 35)
        );
        assert_eq!(remaining(1_000, 500, &book), 435);
    }

    #[test]
    fn many_processes_syncing_in_any_order_never_exceed_the_limit() {
        let limit = 1_000;
        let mut ledger = Ledger {
            used: 0,
            reserved: 0,
        };
        let mut books = [Book::default(); 3];
        let mut seed = 7_u64;
        for _ in 0..2_000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let p = (seed >> 33) as usize % books.len();
            let want = 20 + (seed >> 40) as i64 % 40;
            let book = &mut books[p];
            if (seed >> 20).is_multiple_of(3) && book.in_flight > 0 {
                let reserved = book.in_flight.min(want);
                book.settle(reserved, reserved / 2);
            } else if book.take(want, want, false).is_none() {
                let held_in_ledger = book.held;
                if let Ok(s) = sync(
                    limit,
                    ledger,
                    held_in_ledger,
                    book,
                    Ask::Grow { min: want, want },
                    SIZING,
                ) {
                    ledger = s.ledger;
                    book.held = s.held;
                    book.settled -= s.flushed;
                    assert!(book.take(want, want, false).is_some());
                }
            }
            assert!(books.iter().all(|b| b.available() >= 0));
            let used_everywhere = ledger.used + books.iter().map(|b| b.settled).sum::<i64>();
            assert!(used_everywhere + books.iter().map(|b| b.in_flight).sum::<i64>() <= limit);
            assert!(ledger.used + ledger.reserved <= limit);
        }
    }
}
