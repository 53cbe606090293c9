"""The README's usage example runs as written."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_readme_usage_example_runs(monkeypatch, capsys):
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    example = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    monkeypatch.chdir(ROOT)
    exec(compile(example, "README.md", "exec"), {})
    out = capsys.readouterr().out
    loss = float(re.search(r"loss ([0-9.]+)", out).group(1))
    assert loss < 3.5  # log(vocabulary) is about 4.4 at the start


def test_readme_second_order_example_runs(monkeypatch, capsys):
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    (example,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S)
                  if "HessianFree" in b]
    exec(compile(example, "README.md", "exec"), {})
    out = capsys.readouterr().out
    before, after = map(float, re.search(r"loss ([0-9.]+) -> ([0-9.]+)", out).groups())
    assert after <= before
    assert re.search(r"([0-9.]+)% of fresh sequences right", out)
