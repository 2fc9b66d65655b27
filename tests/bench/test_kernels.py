"""``bench.kernels``: the Perfetto trace reader keeps the device streams' kernels."""
import gzip
import json

import jax
import jax.numpy as jnp
import pytest

from bench import kernels


def _trace(tmp_path, threads, events):
    meta = [dict(ph="M", pid=1, name="process_name", args=dict(name="/host:CPU")),
            dict(ph="M", pid=2, name="process_name", args=dict(name="/device:GPU:0"))]
    meta += [dict(ph="M", pid=2, tid=t, name="thread_name", args=dict(name=n))
             for t, n in threads.items()]
    d = tmp_path / "plugins" / "profile" / "run"
    d.mkdir(parents=True)
    with gzip.open(d / "perfetto_trace.json.gz", "wt") as f:
        json.dump(dict(traceEvents=meta + events), f)
    return str(tmp_path)


def _x(pid, tid, name, ts, dur):
    return dict(ph="X", pid=pid, tid=tid, name=name, ts=ts, dur=dur)


def test_device_events_keep_streams(tmp_path):
    evs = [_x(1, 5, "PjitFunction(f)", 0, 100),                  # host: dropped
           _x(2, 10, "gemm", 10, 30), _x(2, 10, "fusion", 45, 5),
           _x(2, 11, "gemm", 10, 30)]                            # "XLA Ops" summary: dropped
    d = _trace(tmp_path, {10: "Stream #14(Compute)", 11: "XLA Ops"}, evs)
    ev, lines = kernels.device_events(d)
    assert ev == [("gemm", 10.0, 30.0), ("fusion", 45.0, 5.0)]
    assert lines == ["Stream #14(Compute)", "XLA Ops"]


def test_device_events_without_stream_lines(tmp_path):
    d = _trace(tmp_path, {11: "ops"}, [_x(2, 11, "k", 0, 2), _x(1, 5, "host", 0, 9)])
    assert kernels.device_events(d)[0] == [("k", 0.0, 2.0)]


def test_device_events_need_a_trace(tmp_path):
    with pytest.raises(RuntimeError, match="no perfetto trace"):
        kernels.device_events(str(tmp_path))


def test_profile_runs_here():
    """On CPU the trace has no device lines: an empty table, host time measured."""
    r = kernels.profile(jax.jit(lambda x: x * 2), (jnp.ones(8),), calls=2)
    assert r["host_us"] > 0 and r["busy_us"] >= 0 and isinstance(r["rows"], list)
    if jax.default_backend() == "cpu":
        assert r["rows"] == [] and r["busy_us"] == 0
