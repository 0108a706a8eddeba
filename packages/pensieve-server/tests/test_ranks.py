"""The hostfile of `pensieve start --hostfile`, read as mlx.launch reads it, and refused early
and clearly when rank 0 could not serve from it. (Two live ranks: tests/test_distributed.py.)"""

import json

import pytest

from pensieve_core.errors import ConfigError
from pensieve_server.ranks import read_hostfile, ring_addresses


def write(tmp_path, content):
    path = tmp_path / "hosts.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_both_forms_of_mlx_launch_hostfile_are_read(tmp_path):
    hosts = [{"ssh": "127.0.0.1", "ips": ["10.0.0.1"]}, {"ssh": "mac2", "ips": ["10.0.0.2"]}]
    listed = read_hostfile(write(tmp_path, hosts))
    full = read_hostfile(write(tmp_path, {"backend": "jaccl", "envs": ["A=1"], "hosts": hosts}))
    assert [h.ssh for h in listed.hosts] == [h.ssh for h in full.hosts] == ["127.0.0.1", "mac2"]
    assert (full.backend, full.envs) == ("jaccl", ["A=1"])


def test_ring_addresses_use_free_ports_only_when_every_rank_is_here(tmp_path):
    here = read_hostfile(write(tmp_path, [{"ssh": "127.0.0.1"}, {"ssh": "localhost"}]))
    (a,), (b,) = ring_addresses(here)
    assert a.startswith("127.0.0.1:") and b.startswith("127.0.0.1:") and a != b
    apart = read_hostfile(
        write(tmp_path, [{"ssh": "127.0.0.1", "ips": ["10.0.0.1"]}, {"ssh": "m", "ips": ["10.0.0.2"]}])
    )
    assert ring_addresses(apart) == [["10.0.0.1:32323"], ["10.0.0.2:32324"]]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ([{"ssh": "127.0.0.1"}], "at least 2"),
        ([{"ssh": "mac1"}, {"ssh": "127.0.0.1"}], "rank 0, which serves the API"),
        ("{not json", "is not JSON"),
        ({"hosts": [{"name": "x"}]}, "mlx.launch's format"),
    ],
)
def test_a_hostfile_rank_0_cannot_serve_from_is_one_clear_error(tmp_path, content, says):
    with pytest.raises(ConfigError, match=says):
        read_hostfile(write(tmp_path, content))


def rank_group(tmp_path, hostfile):
    from pensieve_core import Settings
    from pensieve_server.ranks import RankGroup

    return RankGroup(Settings(home=str(tmp_path / "home"), hostfile=write(tmp_path, hostfile)))


def test_jaccl_ranks_get_the_coordinator_and_their_devices_as_mlx_launch_gives_them(tmp_path):
    hosts = [
        {"ssh": "127.0.0.1", "ips": ["10.0.0.1"], "rdma": [None, "rdma_en5"]},
        {"ssh": "mac2", "ips": [], "rdma": ["rdma_en5", None]},
    ]
    for backend, ring in (("jaccl", None), ("jaccl-ring", "1")):
        env = rank_group(tmp_path, {"backend": backend, "hosts": hosts})._rank_env()
        assert env["MLX_JACCL_COORDINATOR"] == "10.0.0.1:32323"
        assert json.loads(env["MLX_IBV_DEVICES"]) == [[None, "rdma_en5"], ["rdma_en5", None]]
        assert env.get("MLX_JACCL_RING") == ring and env["PENSIEVE_BACKEND"] == "jaccl"
    with pytest.raises(ConfigError, match="one RDMA entry per rank"):
        rank_group(tmp_path, {"backend": "jaccl", "hosts": [{"ssh": "127.0.0.1"}, {"ssh": "m"}]})._rank_env()


def test_a_backend_pensieve_cannot_start_ranks_over_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="mpirun"):
        rank_group(tmp_path, {"backend": "mpi", "hosts": [{"ssh": "127.0.0.1"}, {"ssh": "m"}]})
