"""What the run log says of each finished stage besides its time (``driver.stage_summary``)."""

from __future__ import annotations

from webapp.runs.driver import stage_summary


def test_each_stage_names_the_figures_a_user_checks_first() -> None:
    assert stage_summary("train", {"epochs": 6, "best_epoch": 5, "best_val_f1": 0.8421}) == (
        ": 6 epochs, kept epoch 5, validation F1 0.842"
    )
    assert stage_summary("segment", {"objects": 213}) == ": 213 objects"
    assert stage_summary("predict", {"distance_max_nm": 1234.4}) == (
        ": largest predicted distance 1234 nm"
    )
    # The filter: how many objects it kept, and at which thresholds (a run fitted on verdicts
    # keeps fewer: the log says so instead of "done in 0.1 s").
    assert (
        stage_summary(
            "filter", {"objects": 284, "kept": 279, "t_volume": 6.98422, "t_sphericity": 0.696268}
        )
        == ": kept 279 of 284 objects, volume >= 6.98 \u00b5m\u00b3 and sphericity >= 0.696"
    )
    assert stage_summary("filter", {"objects": 10, "kept": 10, "t_volume": None}) == (
        ": kept 10 of 10 objects"
    )
    assert stage_summary("publish", {}) == ""
