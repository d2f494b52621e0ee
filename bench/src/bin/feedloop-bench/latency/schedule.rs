//! When to send the bursts, so that every burst fits in one window and the run ends soon
//! after the last window closes.
//!
//! Windows are tumbling and start at multiples of their size from the Unix epoch. A burst that
//! straddled a window end would split its failed logins over two windows and never reach the
//! threshold in either, so no burst starts within [`BOUNDARY_GUARD_MS`] of a window end. The
//! final finding of the last burst arrives only after its window ends, so the last burst goes
//! [`LAST_BURST_LEAD_MS`] before a window end and the spacing stretches to fill the time
//! before it. The run then waits at most one window longer than its shortest schedule.

/// Minimum time between two bursts, in milliseconds.
pub const MIN_SPACING_MS: i64 = 800;

/// Distance from a window boundary within which no burst starts, in milliseconds. A burst
/// takes a few milliseconds to send, so this leaves a wide margin for a slow loop.
pub const BOUNDARY_GUARD_MS: i64 = 250;

/// Time from the last burst to the window end after it, in milliseconds.
pub const LAST_BURST_LEAD_MS: i64 = 1_000;

/// Returns the wall-clock times, in milliseconds since the epoch, at which to send `count`
/// bursts, the first at or just after `first_ms`.
///
/// # Panics
///
/// Panics when `window_ms` is not above `LAST_BURST_LEAD_MS + BOUNDARY_GUARD_MS`.
pub fn plan_bursts(first_ms: i64, count: usize, window_ms: i64) -> Vec<i64> {
    assert!(
        window_ms > LAST_BURST_LEAD_MS + BOUNDARY_GUARD_MS,
        "a window holds the last burst's lead and the guard"
    );
    if count <= 1 {
        return (0..count)
            .map(|_| clear_of_boundary(first_ms, window_ms))
            .collect();
    }
    // The first window end at least the lead after the shortest schedule's last burst.
    let earliest_last = first_ms + MIN_SPACING_MS * (count as i64 - 1);
    let last_end = window_end(earliest_last + LAST_BURST_LEAD_MS - 1, window_ms);
    let last = last_end - LAST_BURST_LEAD_MS;
    let spacing = (last - first_ms) as f64 / (count - 1) as f64;
    (0..count)
        .map(|i| first_ms + (i as f64 * spacing).round() as i64)
        .map(|t| clear_of_boundary(t, window_ms))
        .collect()
}

/// Moves `time_ms` past the nearest window boundary when it lies within the guard of one.
fn clear_of_boundary(time_ms: i64, window_ms: i64) -> i64 {
    let into_window = time_ms.rem_euclid(window_ms);
    if into_window < BOUNDARY_GUARD_MS {
        time_ms + BOUNDARY_GUARD_MS - into_window
    } else if window_ms - into_window < BOUNDARY_GUARD_MS {
        time_ms + (window_ms - into_window) + BOUNDARY_GUARD_MS
    } else {
        time_ms
    }
}

/// Returns the end of the tumbling window that contains `time_ms`.
pub fn window_end(time_ms: i64, window_ms: i64) -> i64 {
    time_ms.div_euclid(window_ms) * window_ms + window_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    fn check_plan(first_ms: i64, count: usize) -> Vec<i64> {
        let plan = plan_bursts(first_ms, count, MINUTE);
        assert_eq!(plan.len(), count);
        assert!(plan[0] >= first_ms, "{plan:?}");
        for pair in plan.windows(2) {
            assert!(
                pair[1] - pair[0] >= MIN_SPACING_MS - 2 * BOUNDARY_GUARD_MS,
                "{plan:?}"
            );
        }
        for time in &plan {
            let into_window = time.rem_euclid(MINUTE);
            assert!(into_window >= BOUNDARY_GUARD_MS, "{time} in {plan:?}");
            assert!(
                MINUTE - into_window >= BOUNDARY_GUARD_MS,
                "{time} in {plan:?}"
            );
        }
        plan
    }

    #[test]
    fn plan_ends_before_window_end() {
        for offset in [0, 1, 5_000, 30_000, 44_000, 45_000, 59_999] {
            let first = 1_748_851_200_000 + offset;
            let plan = check_plan(first, 20);
            let last = *plan.last().unwrap();
            assert_eq!(
                window_end(last, MINUTE) - last,
                LAST_BURST_LEAD_MS,
                "{offset}"
            );
            let span = last - plan[0];
            assert!(
                span >= MIN_SPACING_MS * 19 - 2 * BOUNDARY_GUARD_MS,
                "{offset}: {span}"
            );
            assert!(span < MIN_SPACING_MS * 19 + MINUTE, "{offset}: {span}");
        }
    }

    #[test]
    fn plan_of_one_and_none() {
        assert!(plan_bursts(1_000, 0, MINUTE).is_empty());
        assert_eq!(plan_bursts(1_000, 1, MINUTE), vec![1_000]);
        assert_eq!(
            plan_bursts(MINUTE - 10, 1, MINUTE),
            vec![MINUTE + BOUNDARY_GUARD_MS]
        );
    }

    #[test]
    fn boundary_guard_moves_forward() {
        assert_eq!(
            clear_of_boundary(MINUTE + 10, MINUTE),
            MINUTE + BOUNDARY_GUARD_MS
        );
        assert_eq!(
            clear_of_boundary(MINUTE - 10, MINUTE),
            MINUTE + BOUNDARY_GUARD_MS
        );
        assert_eq!(clear_of_boundary(MINUTE + 500, MINUTE), MINUTE + 500);
    }

    #[test]
    fn window_end_of_times() {
        assert_eq!(window_end(0, MINUTE), MINUTE);
        assert_eq!(window_end(MINUTE - 1, MINUTE), MINUTE);
        assert_eq!(window_end(MINUTE, MINUTE), 2 * MINUTE);
    }
}
