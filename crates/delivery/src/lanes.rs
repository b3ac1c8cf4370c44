//! Concurrency per route: each route is a lane with its own `workers`
//! permits, so one route's outage never delays another route's mail.
//!
//! With one pool of workers for everything, a smarthost that accepts
//! connections and never greets held every worker in a greeting timeout,
//! and a Maildir message behind them waited for two rounds of timeouts
//! (10 s). Here the dispatcher only *tries* to take permits: a message
//! whose lanes are all busy is passed over and the next one is looked at,
//! so messages for a free lane start at once, whatever waits ahead of them.
//!
//! A message whose recipients use several routes starts as soon as one of
//! its lanes is free; it is delivered on the lanes it holds, and its other
//! recipients are held back (not tried, not counted as an attempt) until a
//! later pass finds their lane free. Recipients no route matches get a lane
//! of their own (they are bounced at once, but bouncing spools, so it is
//! bounded too).

use std::sync::Arc;

use portcullis_config::delivery::Delivery;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One lane per route, in file order, then the no-route lane.
pub struct Lanes {
    lanes: Vec<Arc<Semaphore>>,
}

/// Permits a message holds while it is delivered; released on drop.
pub struct Held {
    permits: Vec<(usize, OwnedSemaphorePermit)>,
}

impl Lanes {
    pub fn new(config: &Delivery) -> Lanes {
        let lanes = config
            .routes
            .iter()
            .map(|r| r.workers)
            .chain([config.workers])
            .map(|n| Arc::new(Semaphore::new(n)))
            .collect();
        Lanes { lanes }
    }

    /// The lane of a route index (`None`: no route matches).
    pub fn lane_of(&self, route: Option<usize>) -> usize {
        route.unwrap_or(self.lanes.len() - 1)
    }

    /// Takes a permit on each of `needed` that has one free now; `None`
    /// when none has (the message waits for a later pass). Never waits.
    pub fn try_take(&self, needed: &[usize]) -> Option<Held> {
        let permits: Vec<_> = needed
            .iter()
            .filter_map(|&lane| {
                let semaphore = self.lanes.get(lane)?.clone();
                Some((lane, semaphore.try_acquire_owned().ok()?))
            })
            .collect();
        (!permits.is_empty()).then_some(Held { permits })
    }
}

impl Held {
    /// Whether the message may be delivered on `lane` now.
    pub fn holds(&self, lane: usize) -> bool {
        self.permits.iter().any(|(l, _)| *l == lane)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use portcullis_config::delivery::{Identity, Route, Transport};

    use super::*;

    fn config(workers: &[usize]) -> Delivery {
        let route = |i: usize, n: usize| Route {
            name: format!("r{i}"),
            domains: vec!["*".into()],
            users: vec![],
            transport: Transport::Maildir { path: "/m".into() },
            workers: n,
            identity: Identity::None,
            identity_required: true,
        };
        Delivery {
            workers: 1,
            scan_interval: Duration::from_secs(1),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(1),
            max_age: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(1),
            routes: workers
                .iter()
                .enumerate()
                .map(|(i, &n)| route(i, n))
                .collect(),
        }
    }

    #[test]
    fn a_busy_lane_does_not_stop_another() {
        let lanes = Lanes::new(&config(&[1, 2]));
        let stalled = lanes.try_take(&[0]).expect("lane 0 is free");
        assert!(lanes.try_take(&[0]).is_none(), "lane 0 has one worker");
        let other = lanes.try_take(&[1]).expect("lane 1 is its own");
        assert!(other.holds(1) && !other.holds(0));
        drop(stalled);
        assert!(lanes.try_take(&[0]).is_some(), "released on drop");
    }

    #[test]
    fn a_message_takes_the_free_lanes_of_those_it_needs() {
        let lanes = Lanes::new(&config(&[1, 1]));
        let _busy = lanes.try_take(&[0]).unwrap();
        let no_route = lanes.lane_of(None);
        assert_eq!(no_route, 2);
        let held = lanes.try_take(&[0, 1, no_route]).unwrap();
        assert!(!held.holds(0) && held.holds(1) && held.holds(no_route));
    }
}
