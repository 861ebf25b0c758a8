//! Hysteresis: a state flips only after enough consecutive observations
//! say it should, so one blip never moves a backend in or out.

/// How many consecutive contrary observations flip the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Bad observations that take a true state to false.
    pub to_false: u32,
    /// Good observations that take a false state to true.
    pub to_true: u32,
}

/// A boolean that changes only after a streak of contrary observations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flip {
    state: bool,
    /// Consecutive observations contrary to `state`.
    streak: u32,
}

impl Flip {
    pub fn new(state: bool) -> Flip {
        Flip { state, streak: 0 }
    }

    pub fn state(&self) -> bool {
        self.state
    }

    /// Records one observation; returns whether the state flipped.
    pub fn observe(&mut self, good: bool, thresholds: Thresholds) -> bool {
        if good == self.state {
            self.streak = 0;
            return false;
        }
        self.streak += 1;
        let needed = if self.state {
            thresholds.to_false
        } else {
            thresholds.to_true
        };
        if self.streak >= needed.max(1) {
            self.state = good;
            self.streak = 0;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        to_false: 3,
        to_true: 2,
    };

    fn run(start: bool, observations: &[bool]) -> Vec<bool> {
        let mut flip = Flip::new(start);
        observations
            .iter()
            .map(|&good| {
                flip.observe(good, T);
                flip.state()
            })
            .collect()
    }

    #[test]
    fn consecutive_failures_and_successes_are_needed() {
        assert_eq!(run(true, &[false, false, false]), [true, true, false]);
        assert_eq!(
            run(true, &[false, false, true, false, false, false]),
            [true, true, true, true, true, false],
            "a success resets the streak"
        );
        assert_eq!(run(false, &[true, true]), [false, true]);
        assert_eq!(
            run(false, &[true, false, true, true]),
            [false, false, false, true]
        );
    }

    #[test]
    fn flips_are_reported() {
        let mut flip = Flip::new(true);
        assert!(!flip.observe(false, T));
        assert!(!flip.observe(false, T));
        assert!(flip.observe(false, T));
        assert!(!flip.observe(false, T));
        let immediate = Thresholds {
            to_false: 1,
            to_true: 1,
        };
        assert!(flip.observe(true, immediate));
    }
}
