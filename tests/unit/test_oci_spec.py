"""Spec options are pure functions of the spec: each is checked on its own."""

from criproxy.oci import spec as s


def test_default_is_a_fresh_copy() -> None:
    a, b = s.default_spec(), s.default_spec()
    a["process"]["args"].append("x")
    assert b["process"]["args"] == []


def test_env_later_wins_and_keeps_order() -> None:
    sp = s.build_spec(s.default_spec(), s.with_env(["A=1", "B=2"]), s.with_env(["A=3"]))
    assert sp["process"]["env"] == [s.DEFAULT_PATH, "A=3", "B=2"]


def test_mount_replaces_same_destination() -> None:
    sp = s.build_spec(s.default_spec(), s.with_mount("/dev/shm", "/x/shm", ["rbind", "rw"]))
    shm = [m for m in sp["mounts"] if m["destination"] == "/dev/shm"]
    assert shm == [{"destination": "/dev/shm", "type": "bind", "source": "/x/shm", "options": ["rbind", "rw"]}]


def test_namespaces_join_and_drop() -> None:
    sp = s.build_spec(s.default_spec(), s.with_namespace("network", "/var/run/netns/x"),
                      s.without_namespace("pid"))
    types = {n["type"]: n.get("path", "") for n in sp["linux"]["namespaces"]}
    assert types["network"] == "/var/run/netns/x"
    assert "pid" not in types


STATUS = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t{:016x}\nCapBnd:\t000001ffffffffff\n"


def test_capability_bit_from_status() -> None:
    assert s.has_capability(STATUS.format(1 << 24), s.CAP_SYS_RESOURCE)
    assert not s.has_capability(STATUS.format((1 << 41) - 1 - (1 << 24)), s.CAP_SYS_RESOURCE)
    assert not s.has_capability("Name:\tx\n", s.CAP_SYS_RESOURCE)


def test_oom_score_adj_passes_as_asked_with_the_capability() -> None:
    floor = s.oom_score_floor(restrict=False, can_lower=True, own=0)
    assert floor is None
    assert s.clamp_oom_score_adj(-998, floor) == -998
    assert s.clamp_oom_score_adj(-1000, floor) == -1000


def test_oom_score_adj_clamped_without_the_capability_or_when_restricted() -> None:
    for restrict, can_lower in ((False, False), (True, True), (True, False)):
        floor = s.oom_score_floor(restrict, can_lower, own=-500)
        assert floor == -500
        assert s.clamp_oom_score_adj(-998, floor) == -500
        assert s.clamp_oom_score_adj(-100, floor) == -100
        assert s.clamp_oom_score_adj(1000, floor) == 1000


def test_merge_env_later_key_replaces_earlier_in_place() -> None:
    assert s.merge_env(["PATH=/bin", "A=1"], ["A=2", "B=x=y"], ["PATH=/usr/bin"]) == ["PATH=/usr/bin", "A=2", "B=x=y"]
    assert s.merge_env(["FLAG", "A=1"], ["FLAG=on"]) == ["FLAG=on", "A=1"]
