from visreward.core import progress


def test_time_left_extrapolates_the_finished_parts_mean_rate(monkeypatch):
    monkeypatch.setattr(progress.time, "time", lambda: 1000.0)
    assert progress.time_left("round", 2, 5, started=1000.0 - 130) == "round 2/5 done after 2m10s; about 3m15s left"
    assert progress.time_left("seed", 3, 3, started=1000.0 - 61) == "seed 3/3 done after 1m01s"
