"""The command line (elman.cli): python -m elman info | bench."""
import json
import subprocess
import sys

import pytest

from elman import cli


def run(*args):
    return subprocess.run([sys.executable, "-m", "elman", *args], capture_output=True,
                          text=True, timeout=300)


def test_info_prints_the_configuration():
    out = run("info")
    assert out.returncode == 0, out.stderr
    assert "kernel_path" in out.stdout and "blas" in out.stdout


def test_help_and_unknown_command():
    assert run("--help").returncode == 0
    assert "bench" in run("--help").stdout
    bad = run("frobnicate")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    assert run().returncode == 2


def test_bench_runs_the_suite_quick_by_default(tmp_path, monkeypatch):
    seen = {}
    from elman import bench

    def parsed(argv, **defaults):
        seen["args"] = bench._parser(defaults["prog"], defaults["preset"],
                                     defaults["out"]).parse_args(argv)
        return 0

    monkeypatch.setattr(bench, "main", parsed)
    cli.main(["bench", "--threads", "1"])
    assert (seen["args"].out, seen["args"].preset) == ("elman-bench", "quick")
    cli.main(["bench", "--full", "--out", str(tmp_path)])
    assert (seen["args"].out, seen["args"].preset) == (str(tmp_path), "full")


def test_bench_end_to_end_at_tiny_sizes(tmp_path):
    out = run("bench", "--tiny", "--threads", "1", "--only", "limits,generate",
              "--in-process", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))
    assert result["settings"]["preset"] == "tiny"
    assert (tmp_path / "bench.md").read_text(encoding="utf-8").startswith("#")


@pytest.mark.parametrize("argv", [["info", "--bogus"]])
def test_bad_options_exit_nonzero(argv):
    assert run(*argv).returncode == 2
