import multiprocessing
import time

import numpy as np
import pytest

from fypbench.errors import UserError
from fypbench.runner import Job, Shard, generate, plan_jobs, run_lock, shard_jobs
from fypbench.sample import Sample, coco17_to_openpose18
from fypbench.scoring import score_command


def _samples(n, sources=4):
    kp = np.full((2, 17, 3), 0.5, np.float32)
    return [Sample(id=f"x{i:02d}", prompt="p", keypoints=kp, openpose=coco17_to_openpose18(kp), seed=i,
                   source={"world": "t", "group": i % sources}) for i in range(n)]


def test_plan_is_deterministic_and_covers_every_pair_once():
    samples = _samples(10)
    jobs = plan_jobs([("a", False), ("b", True)], samples, batch_size=3)
    assert jobs == plan_jobs([("a", False), ("b", True)], samples, batch_size=3)
    pairs = [(j.method, sid) for j in jobs for sid in j.sample_ids]
    assert sorted(pairs) == sorted((m, s.id) for m in "ab" for s in samples)
    assert [j.number for j in jobs] == list(range(len(jobs)))


def test_per_source_batches_never_mix_sources():
    samples = _samples(10)
    by_id = {s.id: s for s in samples}
    for job in plan_jobs([("tav", True)], samples, batch_size=8):
        assert len({by_id[sid].source["group"] for sid in job.sample_ids}) == 1


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_partition_the_job_list(count):
    jobs = plan_jobs([("a", False), ("b", False)], _samples(11), batch_size=2)
    parts = [shard_jobs(jobs, Shard(i, count)) for i in range(count)]
    assert sorted(j.number for p in parts for j in p) == [j.number for j in jobs]


def test_batch_composition_independent_of_process_count():
    jobs = plan_jobs([("a", False)], _samples(9), batch_size=4)
    one = {j.sample_ids for j in shard_jobs(jobs, Shard(0, 1))}
    two = {j.sample_ids for i in range(2) for j in shard_jobs(jobs, Shard(i, 2))}
    assert one == two


@pytest.mark.parametrize("text", ["2/2", "a/b", "1", "-1/3", "0/0"])
def test_bad_shard_is_a_user_error(text):
    with pytest.raises(UserError):
        Shard.parse(text)


def test_shard_from_launcher_environment():
    assert Shard.from_environment({}) == Shard(0, 1)
    assert Shard.from_environment({"RANK": "1", "WORLD_SIZE": "2"}) == Shard(1, 2)
    with pytest.raises(UserError):
        Shard.from_environment({"WORLD_SIZE": "2"})


def _hold_lock(run_dir, shard, ready, release):
    with run_lock(run_dir, shard):
        ready.set()
        release.wait(10)


def test_second_run_on_same_directory_is_refused(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(tmp_path, Shard(0, 2), ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(UserError, match="another `fypbench run`, `score` or `forget` is active"):
            with run_lock(tmp_path, Shard(0, 1)):
                pass
        # scoring by hand while a run holds the directory is refused the same way, before anything is read
        with pytest.raises(UserError, match="is active on this run directory"):
            score_command(str(tmp_path))
        with pytest.raises(UserError, match="another"):
            with run_lock(tmp_path, Shard(0, 2)):
                pass
        with run_lock(tmp_path, Shard(1, 2)):  # the other shard of the same launch may run
            pass
    finally:
        release.set()
        holder.join(10)
    with run_lock(tmp_path, Shard(0, 1)):
        pass


class _Counting:
    name = "count"

    def __init__(self):
        self.calls = []

    def config_hash(self):
        return "cfg"

    def generate(self, samples):
        self.calls.append([s.id for s in samples])
        return [np.full((2, 4, 4, 3), s.seed, np.uint8) for s in samples]


def test_generate_skips_done_videos_and_keeps_batches_whole(tmp_path):
    samples = _samples(5)
    jobs = plan_jobs([("count", False)], samples, batch_size=2)
    gen = _Counting()
    report = generate(tmp_path, {"count": gen}, samples, jobs)
    assert report.generated == {"count": 5}
    (tmp_path / "videos" / "count" / "x03.json").unlink()
    gen.calls.clear()
    report = generate(tmp_path, {"count": gen}, samples, jobs)
    assert gen.calls == [["x02", "x03"]]  # only the unfinished batch, still whole
    assert report.generated == {"count": 1} and report.skipped == {"count": 4}


class _Tuning(_Counting):
    """Counts like Tune-A-Video: a tuning per new source, a cache hit after."""

    def __init__(self):
        super().__init__()
        self.stats = {"tuned": 0, "cache_hits": 0, "tuning_seconds": 0.0, "label": "not a counter"}

    def generate(self, samples):
        self.stats["tuned" if not self.calls else "cache_hits"] += 1
        self.stats["tuning_seconds"] += 1.5 if len(self.calls) == 0 else 0.0
        return super().generate(samples)


def test_a_generators_counters_are_recorded_per_call(tmp_path):
    from fypbench.videos import read_meta

    samples = _samples(4)
    generate(tmp_path, {"count": _Tuning()}, samples, plan_jobs([("count", False)], samples, batch_size=2))
    first, second = read_meta(tmp_path, "count", "x00"), read_meta(tmp_path, "count", "x02")
    assert first["call_stats"] == {"tuned": 1, "cache_hits": 0, "tuning_seconds": 1.5}
    assert second["call_stats"] == {"tuned": 0, "cache_hits": 1, "tuning_seconds": 0.0}
    generate(tmp_path / "plain", {"count": _Counting()}, samples, plan_jobs([("count", False)], samples, 2))
    assert "call_stats" not in read_meta(tmp_path / "plain", "count", "x00")
