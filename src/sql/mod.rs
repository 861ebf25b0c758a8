//! SQL text: what rwsplit needs to know about a statement without sending
//! it anywhere.
//!
//! | module | owns |
//! |---|---|
//! | [`kill`] | `KILL [QUERY] id`, which rwsplit answers itself |

pub mod kill;
