"""sanmini.timing: the calls take turns, every round runs each once, the fastest run is reported;
wrong arguments are refused by name. Times come from a clock the test controls, not from a machine."""
import pytest

from sanmini import timing


@pytest.fixture
def clock(monkeypatch):
    """time.perf_counter advanced only by the calls themselves: each call adds its own cost."""
    now = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: now[0])
    return now


def test_calls_take_turns_after_untimed_warmup(clock):
    order = []
    costs = {"a": iter([9, 3.0, 1.0, 2.0]), "b": iter([9, 5.0, 4.0, 6.0])}

    def call(name):
        def run():
            order.append(name)
            clock[0] += next(costs[name])
        return run

    seconds = timing.take_turns({"a": call("a"), "b": call("b")}, repeats=3, warmup=1)
    assert order == ["a", "b"] * 4                      # one warm-up round, then three rounds of turns
    assert seconds == {"a": [3.0, 1.0, 2.0], "b": [5.0, 4.0, 6.0]}


def test_fastest_is_the_minimum_and_sync_is_inside_the_clock(clock):
    synced = []

    def sync():
        synced.append(True)
        clock[0] += 0.5                                 # waiting for the device counts

    runs = iter([1.0, 4.0, 2.0])
    result = timing.fastest({"x": lambda: clock.__setitem__(0, clock[0] + next(runs))}, repeats=3, warmup=0, sync=sync)
    assert result == {"x": 1.5} and len(synced) == 3


@pytest.mark.parametrize("kwargs, word", [
    (dict(calls={}), "calls"), (dict(calls={"a": 1}), "calls"), (dict(calls=[lambda: 0]), "calls"),
    (dict(calls={"a": lambda: 0}, repeats=0), "repeats"), (dict(calls={"a": lambda: 0}, repeats=True), "repeats"),
    (dict(calls={"a": lambda: 0}, warmup=-1), "warmup"), (dict(calls={"a": lambda: 0}, warmup=1.5), "warmup"),
])
def test_wrong_arguments_are_refused_by_name(kwargs, word):
    with pytest.raises(ValueError, match=word):
        timing.take_turns(**kwargs)
