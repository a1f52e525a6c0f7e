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


def test_clamp_never_below_own() -> None:
    own = int(open("/proc/self/oom_score_adj").read())
    assert s.clamp_oom_score_adj(-998) == max(-998, own)
    assert s.clamp_oom_score_adj(1000) == 1000
