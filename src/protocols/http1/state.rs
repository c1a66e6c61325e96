//! The states of one HTTP/1.1 connection, the transitions between them as
//! data, and the timer each state runs (h11's shape: everything that
//! changes a connection's state goes through [`ConnState::on`]).
//!
//! | state   | what the connection waits for     | its timer                  |
//! |---------|-----------------------------------|----------------------------|
//! | Idle    | the first byte of a request       | `keep_alive` since the last response (`header_timeout` before the first); on a graceful stop, the drain period |
//! | Head    | the rest of a request head        | `header_timeout` since its first byte (then 408) |
//! | Body    | request-body bytes                | `body_timeout` since the last bytes (then 408) |
//! | App     | the application's answer          | none (`--timeout` is the master's) |
//! | Send    | the client to take the response   | none                       |
//! | Closed  | nothing                           | none                       |

use std::time::Duration;

use tokio::time::Instant;

use crate::protocols::Settings;

/// Where a connection is in its request/response cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Between requests (or before the first).
    Idle,
    /// Part of a request head has arrived.
    Head,
    /// Reading a request body.
    Body,
    /// The application has the request.
    App,
    /// Writing the response.
    Send,
    /// Done: the connection closes.
    Closed,
}

/// What happens to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Bytes of a request head arrived.
    HeadBytes,
    /// A complete head was read (its body, if any, follows).
    HeadDone,
    /// The body is complete: the request goes to the application.
    Dispatched,
    /// The application's answer is being written.
    Answered,
    /// The response is out and the connection stays open.
    KeptAlive,
    /// The connection ends (a close, a rejection, a timeout, the client left).
    Close,
}

/// Every allowed transition; anything else is a bug (debug builds panic,
/// release builds close the connection).
const TRANSITIONS: &[(State, Event, State)] = &[
    (State::Idle, Event::HeadBytes, State::Head),
    (State::Idle, Event::HeadDone, State::Body),
    (State::Head, Event::HeadBytes, State::Head),
    (State::Head, Event::HeadDone, State::Body),
    (State::Body, Event::Dispatched, State::App),
    (State::App, Event::Answered, State::Send),
    (State::Send, Event::KeptAlive, State::Idle),
];

/// The state of one connection and the times its timers run from.
#[derive(Debug)]
pub struct ConnState {
    state: State,
    /// The last bytes read or the last response finished.
    last: Instant,
    /// When the request head in progress began.
    head_since: Instant,
    /// Set once a graceful stop began: when idle waiting ends.
    drain_until: Option<Instant>,
    /// Whether a response was sent: before the first request the idle wait
    /// is `header_timeout`, since keep-alive (maybe off) is not yet in play.
    served: bool,
}

impl ConnState {
    /// A new connection: idle, its keep-alive timer running from now.
    pub fn new() -> Self {
        let now = Instant::now();
        ConnState {
            state: State::Idle,
            last: now,
            head_since: now,
            drain_until: None,
            served: false,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Applies `event`; see [`TRANSITIONS`].
    pub fn on(&mut self, event: Event) {
        let next = if event == Event::Close {
            State::Closed
        } else {
            TRANSITIONS
                .iter()
                .find(|(from, on, _)| *from == self.state && *on == event)
                .map_or(State::Closed, |t| t.2)
        };
        debug_assert!(
            next != State::Closed || event == Event::Close,
            "{event:?} in {:?}",
            self.state
        );
        if self.state == State::Idle && next == State::Head {
            self.head_since = Instant::now();
        }
        if event == Event::KeptAlive {
            self.last = Instant::now();
            self.served = true;
        }
        self.state = next;
    }

    /// Notes that bytes arrived (`now`: the time they did).
    pub fn touch(&mut self, now: Instant) {
        self.last = now;
    }

    /// Starts the drain of a graceful stop: an idle connection waits at most
    /// `drain` more for a request.
    pub fn stop(&mut self, drain: Duration) {
        self.drain_until.get_or_insert(Instant::now() + drain);
    }

    /// Whether a graceful stop has begun.
    pub fn stopping(&self) -> bool {
        self.drain_until.is_some()
    }

    /// When the current wait runs out; `None` while no timer runs.
    pub fn deadline(&self, s: &Settings) -> Option<Instant> {
        match self.state {
            State::Idle => {
                let wait = if self.served {
                    s.keep_alive
                } else {
                    s.header_timeout
                };
                let idle = self.last + wait;
                Some(self.drain_until.map_or(idle, |d| d.min(idle)))
            }
            State::Head => Some(self.head_since + s.header_timeout),
            State::Body => Some(self.last + s.body_timeout),
            State::App | State::Send | State::Closed => None,
        }
    }
}

impl Default for ConnState {
    fn default() -> Self {
        Self::new()
    }
}
