//! The port-25 state machine (DESIGN.md, "Port-25 states").
//!
//! ```text
//!   exempt ──(plan→dynamic)──► blocked ──request──► optout-pending ──approve──► opted-out
//!     ▲                           ▲  ◄────deny──────────┘                          │
//!     └──(plan→static)────────────┘                                          abuse/block
//!                                                                                  ▼
//!   any state ──operator block──► reinstated ──operator unblock──► opted-out | exempt
//! ```
//!
//! [`Port25State::apply`] decides one step; it never touches storage. A refused step
//! comes back as a [`TransitionError`] whose text tells the person what to do instead.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::subscriber::Plan;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Port25State {
    /// Static plan: port 25 open.
    #[serde(rename = "exempt")]
    Exempt,
    /// Dynamic plan default: port 25 blocked.
    #[serde(rename = "blocked")]
    Blocked,
    /// The subscriber asked to opt out; still blocked until an operator decides.
    #[serde(rename = "optout-pending")]
    OptoutPending,
    /// Opt-out approved: port 25 open.
    #[serde(rename = "opted-out")]
    OptedOut,
    /// Blocked after abuse or by an operator; only an operator re-opens.
    #[serde(rename = "reinstated")]
    Reinstated,
}

impl Port25State {
    pub const ALL: [Port25State; 5] = [
        Port25State::Exempt,
        Port25State::Blocked,
        Port25State::OptoutPending,
        Port25State::OptedOut,
        Port25State::Reinstated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Port25State::Exempt => "exempt",
            Port25State::Blocked => "blocked",
            Port25State::OptoutPending => "optout-pending",
            Port25State::OptedOut => "opted-out",
            Port25State::Reinstated => "reinstated",
        }
    }

    /// The state a new subscriber on `plan` starts in.
    pub fn initial(plan: Plan) -> Port25State {
        match plan {
            Plan::Dynamic => Port25State::Blocked,
            Plan::Static => Port25State::Exempt,
        }
    }

    /// Whether outbound port 25 is open for this subscriber's addresses.
    pub fn is_open(self) -> bool {
        matches!(self, Port25State::Exempt | Port25State::OptedOut)
    }

    /// One step of the state machine: the state after `action`, or why not.
    pub fn apply(self, plan: Plan, action: &Port25Action) -> Result<Port25State, TransitionError> {
        use Port25Action as A;
        use Port25State as S;
        match (action, self) {
            (
                A::RequestOptOut {
                    aup_accepted: false,
                },
                _,
            ) => Err(TransitionError::AupNotAccepted),
            (A::RequestOptOut { .. }, _) if plan == Plan::Static => {
                Err(TransitionError::StaticNeedsNoOptOut)
            }
            (A::RequestOptOut { .. }, S::Blocked) => Ok(S::OptoutPending),
            (A::RequestOptOut { .. }, S::OptoutPending) => Err(TransitionError::AlreadyPending),
            (A::RequestOptOut { .. }, S::OptedOut | S::Exempt) => {
                Err(TransitionError::AlreadyOpen(self))
            }
            (A::RequestOptOut { .. }, S::Reinstated) => {
                Err(TransitionError::ReinstatedNeedsOperator)
            }

            (A::ApproveOptOut | A::DenyOptOut, S::OptoutPending) => {
                Ok(if matches!(action, A::ApproveOptOut) {
                    S::OptedOut
                } else {
                    S::Blocked
                })
            }
            (A::ApproveOptOut | A::DenyOptOut, _) => Err(TransitionError::NoPendingRequest(self)),

            (A::Block, S::Reinstated) => Err(TransitionError::AlreadyReinstated),
            (A::Block, _) => Ok(S::Reinstated),

            (A::Reinstate, S::OptedOut | S::OptoutPending) => Ok(S::Reinstated),
            (A::Reinstate, _) => Err(TransitionError::NothingToReinstate(self)),

            (A::Unblock, S::OptedOut | S::Exempt) => Err(TransitionError::AlreadyOpen(self)),
            (A::Unblock, _) => Ok(match plan {
                Plan::Dynamic => S::OptedOut,
                Plan::Static => S::Exempt,
            }),

            // An explicit block survives a plan change: only `port25 unblock` lifts it.
            (A::PlanChanged(_), S::Reinstated) => Ok(S::Reinstated),
            (A::PlanChanged(new), _) => Ok(Port25State::initial(*new)),
        }
    }
}

impl fmt::Display for Port25State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Port25State {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Port25State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown port-25 state '{s}'"))
    }
}

/// What someone asks of the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Port25Action {
    /// The subscriber asks to open port 25 (must accept the acceptable use policy).
    RequestOptOut {
        aup_accepted: bool,
    },
    ApproveOptOut,
    DenyOptOut,
    /// An operator closes port 25 whatever the state.
    Block,
    /// A detector saw abuse from an opted-out subscriber.
    Reinstate,
    /// An operator opens port 25.
    Unblock,
    PlanChanged(Plan),
}

impl Port25Action {
    /// The name recorded in the audit log.
    pub fn name(&self) -> &'static str {
        match self {
            Port25Action::RequestOptOut { .. } => "optout-request",
            Port25Action::ApproveOptOut => "optout-approve",
            Port25Action::DenyOptOut => "optout-deny",
            Port25Action::Block => "port25-block",
            Port25Action::Reinstate => "reinstate",
            Port25Action::Unblock => "port25-unblock",
            Port25Action::PlanChanged(_) => "set-plan",
        }
    }
}

/// Why a step of the state machine was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("the acceptable use policy must be accepted to request an opt-out (--accept-aup)")]
    AupNotAccepted,
    #[error(
        "static subscribers are exempt: port 25 is already open, there is nothing to opt out of"
    )]
    StaticNeedsNoOptOut,
    #[error("an opt-out request is already pending")]
    AlreadyPending,
    #[error("port 25 is already open (state {0})")]
    AlreadyOpen(Port25State),
    #[error(
        "port 25 was blocked again after abuse (state reinstated); only an operator can re-open it"
    )]
    ReinstatedNeedsOperator,
    #[error("there is no pending opt-out request (state {0})")]
    NoPendingRequest(Port25State),
    #[error("port 25 is already blocked by an operator (state reinstated)")]
    AlreadyReinstated,
    #[error("nothing to re-instate: port 25 is not opted out (state {0})")]
    NothingToReinstate(Port25State),
}

/// Who made a change.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Actor {
    Operator(String),
    Customer(String),
    /// A component acting on its own, e.g. `abuse` or `radius`.
    System(String),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Operator(n) => write!(f, "operator:{n}"),
            Actor::Customer(n) => write!(f, "customer:{n}"),
            Actor::System(n) => write!(f, "system:{n}"),
        }
    }
}

impl FromStr for Actor {
    type Err = String;
    fn from_str(s: &str) -> Result<Actor, String> {
        match s.split_once(':') {
            Some(("operator", n)) => Ok(Actor::Operator(n.into())),
            Some(("customer", n)) => Ok(Actor::Customer(n.into())),
            Some(("system", n)) => Ok(Actor::System(n.into())),
            _ => Err(format!("'{s}' is not an actor")),
        }
    }
}

impl Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One line of the audit log: who did what to whom, when and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub at: Timestamp,
    pub actor: Actor,
    pub login: String,
    pub action: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use Port25Action as A;
    use Port25State as S;

    const REQ: A = A::RequestOptOut { aup_accepted: true };

    #[test]
    fn customer_opt_out_flow() {
        let s = S::initial(Plan::Dynamic);
        assert_eq!(s, S::Blocked);
        let s = s.apply(Plan::Dynamic, &REQ).unwrap();
        assert_eq!(s, S::OptoutPending);
        assert!(!s.is_open(), "pending is still blocked");
        let s = s.apply(Plan::Dynamic, &A::ApproveOptOut).unwrap();
        assert_eq!(s, S::OptedOut);
        assert!(s.is_open());
        let s = s.apply(Plan::Dynamic, &A::Reinstate).unwrap();
        assert_eq!(s, S::Reinstated);
        assert_eq!(
            s.apply(Plan::Dynamic, &REQ),
            Err(TransitionError::ReinstatedNeedsOperator)
        );
        assert_eq!(s.apply(Plan::Dynamic, &A::Unblock), Ok(S::OptedOut));
    }

    #[test]
    fn deny_returns_to_blocked() {
        assert_eq!(
            S::OptoutPending.apply(Plan::Dynamic, &A::DenyOptOut),
            Ok(S::Blocked)
        );
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(
            S::Blocked.apply(Plan::Dynamic, &A::ApproveOptOut),
            Err(TransitionError::NoPendingRequest(S::Blocked))
        );
        assert_eq!(
            S::Exempt.apply(Plan::Static, &REQ),
            Err(TransitionError::StaticNeedsNoOptOut)
        );
        assert_eq!(
            S::Blocked.apply(
                Plan::Dynamic,
                &A::RequestOptOut {
                    aup_accepted: false
                }
            ),
            Err(TransitionError::AupNotAccepted)
        );
        assert_eq!(
            S::OptoutPending.apply(Plan::Dynamic, &REQ),
            Err(TransitionError::AlreadyPending)
        );
        assert_eq!(
            S::OptedOut.apply(Plan::Dynamic, &REQ),
            Err(TransitionError::AlreadyOpen(S::OptedOut))
        );
        assert_eq!(
            S::Blocked.apply(Plan::Dynamic, &A::Reinstate),
            Err(TransitionError::NothingToReinstate(S::Blocked))
        );
        assert_eq!(
            S::Reinstated.apply(Plan::Dynamic, &A::Block),
            Err(TransitionError::AlreadyReinstated)
        );
        assert_eq!(
            S::Exempt.apply(Plan::Static, &A::Unblock),
            Err(TransitionError::AlreadyOpen(S::Exempt))
        );
        assert_eq!(
            TransitionError::NoPendingRequest(S::Blocked).to_string(),
            "there is no pending opt-out request (state blocked)"
        );
    }

    #[test]
    fn operator_block_and_unblock_follow_plan() {
        assert_eq!(S::Exempt.apply(Plan::Static, &A::Block), Ok(S::Reinstated));
        assert_eq!(
            S::Reinstated.apply(Plan::Static, &A::Unblock),
            Ok(S::Exempt)
        );
        assert_eq!(
            S::Blocked.apply(Plan::Dynamic, &A::Unblock),
            Ok(S::OptedOut)
        );
        assert_eq!(
            S::OptoutPending.apply(Plan::Dynamic, &A::Block),
            Ok(S::Reinstated)
        );
    }

    #[test]
    fn plan_changes() {
        assert_eq!(
            S::OptedOut.apply(Plan::Dynamic, &A::PlanChanged(Plan::Static)),
            Ok(S::Exempt)
        );
        assert_eq!(
            S::Exempt.apply(Plan::Static, &A::PlanChanged(Plan::Dynamic)),
            Ok(S::Blocked)
        );
        assert_eq!(
            S::Reinstated.apply(Plan::Dynamic, &A::PlanChanged(Plan::Static)),
            Ok(S::Reinstated)
        );
    }

    #[test]
    fn states_and_actors_parse_back() {
        for s in S::ALL {
            assert_eq!(s.as_str().parse::<S>().unwrap(), s);
        }
        for a in [
            Actor::Operator("ann".into()),
            Actor::Customer("bob".into()),
            Actor::System("abuse".into()),
        ] {
            assert_eq!(a.to_string().parse::<Actor>().unwrap(), a);
        }
    }
}
