//! Injected time: the CA decides with the same [`Clock`] the agent uses
//! (defined once, in the proto crate).

pub use certkeeper_proto::clock::{Clock, FakeClock, SystemClock};
