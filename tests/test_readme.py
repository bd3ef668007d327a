"""The README's two commands are what CI runs; keep them from drifting apart."""

import re

from tests.conftest import REPO_ROOT


def _block_after(text: str, marker: str) -> list[str]:
    start = text.index(marker)
    match = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    assert match, f"no bash block after {marker!r}"
    return [line.strip() for line in match.group(1).splitlines() if line.strip()]


def test_ci_runs_exactly_the_readme_test_commands() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    ci = [
        line.strip()
        for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    commands = _block_after(readme, "Set up and run the tests")
    # The README's lines appear in .ci/run, consecutively and in order.
    n = len(commands)
    assert any(ci[i : i + n] == commands for i in range(len(ci) - n + 1)), (commands, ci)


def test_readme_starts_with_the_two_commands() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    first_blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)[:2]
    assert "jaxpick demo" in first_blocks[0]
    assert "pytest" in first_blocks[1]
